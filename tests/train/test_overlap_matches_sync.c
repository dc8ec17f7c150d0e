/* test_overlap_matches_sync — run under mpiexec -np 2. The same small model trains with the
 * gradient all-reduce overlapped with backward (the trainer's grad_ready hook) and with the
 * one-call all-reduce after backward (train.overlap_allreduce = false): 3 steps of 3 micro-batches
 * per rank, then a step where rank 0 has one micro-batch (the hooked backward is also the first)
 * and rank 1 none (it only joins the sums). The master weights must be bit-identical between the
 * two paths (the reference is the one-call path, which never uses the hook) and between the ranks.
 * Both paths run again with 2 and 3 gradient buffers (train.grad_buffers: the hook then adds the
 * buffers of several micro-batches in one pass, one of them from an earlier pass or not): the
 * same bits again.
 *
 * The MPI communicator and the CPU ops are wrapped to watch the overlapped path: every started
 * sum is logged with its offset in the accumulator and the number of embed_backward calls so
 * far. That proves the buckets come in backward's order (layer L-1's slices ... layer 0's,
 * then the non-layer tensors) and that the layers' sums start before backward has reached the
 * embeddings (the last thing it does). */
#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/util.h"
#include "kernels/ops.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEPS 4 /* the last one: rank 0 has one micro-batch, rank 1 none */
#define MICRO 3
#define MAX_STARTS 4096

static const char *CONFIG =
    "[model]\nvocab_size = 40\ndim = 16\nn_layers = 3\nn_heads = 2\nffn_dim = 32\n"
    "max_positions = 16\nn_langs = 2\nlangs = de,en\ndropout = 0.1\nattention_dropout = 0.1\n"
    "layer_norm_eps = 1e-12\nuse_lang_emb = true\n"
    "[train]\nbatch_tokens = 48\nmicro_batch = 3\nseq_len = 8\nlr = 0.01\n"
    "schedule = constant\nwarmup = 0\nwarmup_init_lr = 1e-7\nmax_steps = 10\nclip_norm = 1\n"
    "precision = fp32\nseed = 5\nlog_every = 1\neval_every = 10\ncheckpoint_every = 10\n"
    "keep_last = 1\neval_batches = 1\n";

/* ---- watching: the wrapped communicator and ops ---- */

static struct comm *g_inner;
static struct ops g_ops;
static long g_embed_calls;
static const float *g_acc;
static struct start_log {
    size_t off, n;
    long embed_calls;
} g_log[MAX_STARTS];
static int g_starts;

static void counting_embed_backward(void *dwte, void *dwpe, void *dwlang, const void *dout,
                                    const int32_t *ids, const int32_t *langs, const int32_t *pos,
                                    int B, int T, int C, int V, int n_langs) {
    g_embed_calls++;
    ops_cpu(OPS_FP32)->embed_backward(dwte, dwpe, dwlang, dout, ids, langs, pos, B, T, C, V,
                                      n_langs);
}

static int logging_start(struct comm *c, float *x, size_t n) {
    (void)c;
    if (g_starts < MAX_STARTS)
        g_log[g_starts] = (struct start_log){(size_t)(x - g_acc), n, g_embed_calls};
    g_starts++;
    return g_inner->allreduce_sum_f32_start(g_inner, x, n);
}

static int forward_wait(struct comm *c) {
    (void)c;
    return g_inner->allreduce_wait(g_inner);
}

/* ---- data: per rank, step and micro-batch, right padded ---- */

struct micro_data {
    int32_t ids[3 * 8], langs[3 * 8], targets[3 * 8], lengths[3];
};

static void make_micro(struct micro_data *d, struct batch *b, int rank, int step, int i) {
    int B = 3, T = 8, V = 40;
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)(rank * 1000 + step * 10 + i + 1);
    for (int r = 0; r < B; r++) {
        d->lengths[r] = T - (r + i + step) % 4; /* some padding, never empty */
        for (int p = 0; p < T; p++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int real = p < d->lengths[r];
            d->ids[r * T + p] = real ? 4 + (int32_t)(x % (uint64_t)(V - 4)) : 2;
            d->langs[r * T + p] = (r + rank) % 2;
            d->targets[r * T + p] = real ? 4 + (int32_t)((x >> 20) % (uint64_t)(V - 4)) : -1;
        }
    }
    *b = (struct batch){.B = B,
                        .T = T,
                        .ids = d->ids,
                        .langs = d->langs,
                        .lengths = d->lengths,
                        .targets = d->targets,
                        .row0 = (uint32_t)(rank * MICRO * B + i * B)};
}

/* The expected log of one overlapped step: layer L-1 ... 0 (stacked tensors in arena order),
 * then the non-layer tensors in arena order. Returns the number of entries. */
static int expected_starts(const struct model *m, struct start_log *e) {
    int k = 0;
    for (int l = m->cfg.model.n_layers - 1; l >= 0; l--)
        for (int id = P_QW; id <= P_LN2B; id++) {
            const struct param_tensor *p = &m->params[id];
            size_t slice = p->numel / (size_t)p->layers;
            e[k++] = (struct start_log){p->offset + (size_t)l * slice, slice, 0};
        }
    for (int id = 0; id < P_COUNT; id++)
        if ((id < P_QW || id > P_LN2B) && m->params[id].numel)
            e[k++] = (struct start_log){m->params[id].offset, m->params[id].numel, 0};
    return k;
}

static int g_failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d FAIL: ", g_inner->rank);                                      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* Trains STEPS steps from the same initial weights; returns the master weights (malloc'd). */
static float *train(const struct xlmc_config *base, struct comm *c, int no_overlap,
                    int grad_buffers) {
    struct model m;
    struct trainer t;
    struct xlmc_config cfg = *base;
    cfg.train.overlap_allreduce = !no_overlap;
    cfg.train.grad_buffers = grad_buffers;
    if (model_create(&m, &cfg, &g_ops)) exit(1);
    model_init_weights(&m, 11);
    if (trainer_init(&t, &m, c)) exit(1);
    g_acc = t.grad_acc;
    g_embed_calls = 0;
    g_starts = 0;
    struct start_log expect[MAX_STARTS];
    int per_step = expected_starts(&m, expect);
    int n_layer_starts = m.cfg.model.n_layers * (P_LN2B - P_QW + 1);

    for (int s = 0; s < STEPS; s++) {
        struct micro_data d[MICRO];
        struct batch b[MICRO];
        for (int i = 0; i < MICRO; i++)
            make_micro(&d[i], &b[i], c->rank, s, i);
        int n_micro = s == STEPS - 1 ? 1 - c->rank : MICRO;
        long embeds_before = g_embed_calls;
        int starts_before = g_starts;
        struct step_stats st;
        if (trainer_step(&t, b, n_micro, &st)) exit(1);
        CHECK(!st.skipped && st.lr > 0, "step %d was not applied", s);
        /* CLM runs the output layer on every position: both ranks' micro-batches, 3 x 8 each */
        long rows = s == STEPS - 1 ? 1 : 2 * MICRO;
        CHECK(st.classified == rows * 3 * 8, "step %d: %ld rows classified, expected %ld", s,
              st.classified, rows * 3 * 8);
        int got = g_starts - starts_before;
        if (no_overlap) {
            CHECK(got == 0, "step %d: %d sums started on the one-call path", s, got);
            continue;
        }
        CHECK(got == per_step, "step %d: %d sums started, expected %d", s, got, per_step);
        if (got != per_step || g_starts > MAX_STARTS) continue;
        for (int k = 0; k < per_step; k++) {
            const struct start_log *e = &expect[k], *r = &g_log[starts_before + k];
            CHECK(r->off == e->off && r->n == e->n,
                  "step %d start %d: offset %zu n %zu, expected offset %zu n %zu", s, k, r->off,
                  r->n, e->off, e->n);
            if (n_micro == 0) continue;
            /* layers: after the first micro-batch's backward, before the last one's
             * embeddings; the rest: after the embeddings */
            long want = embeds_before + (k < n_layer_starts ? n_micro - 1 : n_micro);
            CHECK(r->embed_calls == want,
                  "step %d start %d: started after %ld embed_backward calls, expected %ld", s, k,
                  r->embed_calls - embeds_before, want - embeds_before);
        }
    }
    CHECK(t.step == STEPS, "%ld steps applied, expected %d", t.step, STEPS);
    float *w = malloc(m.num_params * sizeof(float));
    memcpy(w, m.master, m.num_params * sizeof(float));
    trainer_free(&t);
    model_destroy(&m);
    return w;
}

int main(int argc, char **argv) {
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    g_inner = comm_mpi_create();
    if (g_inner->world != 2) {
        fprintf(stderr, "run with 2 ranks (mpiexec -np 2), not %d\n", g_inner->world);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    struct comm wrapped = *g_inner;
    wrapped.allreduce_sum_f32_start = logging_start;
    wrapped.allreduce_wait = forward_wait;
    g_ops = *ops_cpu(OPS_FP32);
    g_ops.embed_backward = counting_embed_backward;

    struct xlmc_config cfg;
    if (config_parse_string(CONFIG, "test_overlap_matches_sync", &cfg)) return 1;
    struct model probe;
    if (model_create(&probe, &cfg, &g_ops)) return 1;
    size_t n = probe.num_params;
    float *init = malloc(n * sizeof(float));
    model_init_weights(&probe, 11);
    memcpy(init, probe.master, n * sizeof(float));
    model_destroy(&probe);

    float *sync = train(&cfg, &wrapped, 1, 1);
    size_t moved = 0;
    for (size_t i = 0; i < n; i++)
        moved += memcmp(&sync[i], &init[i], sizeof(float)) != 0;
    CHECK(moved > n / 2, "training moved only %zu of %zu weights", moved, n);
    /* overlapped with one buffer (the reference's twin), then both paths with 2 and 3 */
    static const int runs[][2] = {{0, 1}, {1, 2}, {0, 2}, {1, 3}, {0, 3}};
    float *ovl = NULL;
    size_t differ = 0;
    for (size_t r = 0; r < XLMC_ARRAY_LEN(runs); r++) {
        float *w = train(&cfg, &wrapped, runs[r][0], runs[r][1]);
        size_t d = 0, first = n;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&sync[i], &w[i], sizeof(float))) {
                if (!d) first = i;
                d++;
            }
        CHECK(d == 0,
              "%zu of %zu master weights differ between %s with %d gradient buffer(s) and "
              "one-call with 1 (first at %zu: %.9g vs %.9g)",
              d, n, runs[r][0] ? "one-call" : "overlapped", runs[r][1], first,
              first < n ? w[first] : 0.0, first < n ? sync[first] : 0.0);
        differ += d;
        if (r == 0)
            ovl = w;
        else
            free(w);
    }
    /* the ranks must hold the same weights: compare with rank 0's */
    float *r0 = malloc(n * sizeof(float));
    memcpy(r0, ovl, n * sizeof(float));
    if (g_inner->broadcast(g_inner, r0, n * sizeof(float), 0)) return 1;
    CHECK(memcmp(r0, ovl, n * sizeof(float)) == 0, "rank %d's weights differ from rank 0's",
          g_inner->rank);

    int failures = g_failures;
    if (g_inner->allreduce_max_int(g_inner, &failures, 1)) return 1;
    if (g_inner->rank == 0)
        printf("%zu parameters, %d steps: overlapped %s one-call; %s\n", n, STEPS,
               differ ? "differs from" : "bit-identical to", failures ? "FAILED" : "PASSED");
    free(init), free(sync), free(ovl), free(r0);
    comm_destroy(g_inner);
    MPI_Finalize();
    return failures ? 1 : 0;
}
