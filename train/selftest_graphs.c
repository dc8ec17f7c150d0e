/* selftest_graphs.c — the training step replayed from recorded graphs (train.cuda_graphs, on a
 * backend with ops->graph_begin) against the same steps launched one by one, on the same
 * backend: identical bits are required, not a tolerance. Four fp16 steps of two micro-batches
 * each, dropout on, rows of changing lengths (so the gradient scale, the dropout keys' step and
 * row 0 change from one replay to the next). Before the third step a large op grows the
 * backend's scratch buffer, which moves it: the recorded graphs that use it must be refused
 * (never replayed with a stale pointer) and recorded anew. The two micro-batches of a step
 * write two gradient buffers (train.grad_buffers' default on a GPU), each with its own
 * segments; a third run with one buffer must give the same bits. A fourth run has a
 * weights_wait hook (the sharded optimizer's: the forward then records one segment per layer,
 * each after its wait) that only checks its calls come in order, -1 then each layer: the
 * same bits again. */
#include "train/selftest.h"

#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"

#include <stdlib.h>
#include <string.h>

enum { GR_B = 2, GR_T = 16, GR_STEPS = 4, GR_MICRO = 2, GR_LAYERS = 2 };

static const char GR_CONFIG[] =
    "[model]\nvocab_size = 50\ndim = 64\nn_layers = 2\nn_heads = 4\nffn_dim = 256\n"
    "max_positions = 128\nn_langs = 2\nlangs = de,en\ndropout = 0.1\n"
    "attention_dropout = 0.1\nlayer_norm_eps = 1e-12\nuse_lang_emb = true\n"
    "[train]\nbatch_tokens = 64\nmicro_batch = 2\nseq_len = 16\nlr = 0.001\n"
    "schedule = constant\nmax_steps = 10\nprecision = fp16\nseed = 3\nclip_norm = 5\n";

/* micro-batch i of step s: ids from a fixed generator, lengths that change with (s, i) */
static void gr_batch(int s, int i, int32_t *ids, int32_t *langs, int32_t *lengths, int32_t *targets,
                     struct batch *b) {
    uint64_t x = 977u * (uint64_t)(s * GR_MICRO + i) + 1;
    for (int r = 0; r < GR_B; r++)
        lengths[r] = 3 + (int)((7u * (unsigned)(s * GR_MICRO + i) + 5u * (unsigned)r) % (GR_T - 3));
    for (int n = 0; n < GR_B * GR_T; n++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[n] = 4 + (int)((x >> 33) % 46u);
        langs[n] = n / GR_T;
    }
    for (int r = 0; r < GR_B; r++)
        for (int t = 0; t < GR_T; t++)
            targets[r * GR_T + t] = t + 1 < lengths[r] ? ids[r * GR_T + t + 1] : -1;
    struct batch one = {GR_B, GR_T, ids, langs, lengths, targets, 0, NULL, 0};
    one.row0 = (uint32_t)(i * GR_B);
    *b = one;
}

/* Grows the backend's fp32 scratch (the LayerNorm backward's partial sums) far beyond what the
 * tiny model used, as an evaluation of a larger batch could. */
static void gr_grow_scratch(const struct ops *ops, int N) {
    int C = 256;
    size_t sb = (size_t)N * C * ops->storage_bytes;
    void *a = ops->alloc(sb), *d = ops->alloc(sb), *w = ops->alloc((size_t)C * 3 * 4);
    float *mr = ops->alloc((size_t)N * 2 * sizeof(float));
    if (a && d && w && mr) {
        void *dw = (char *)w + (size_t)C * ops->storage_bytes;
        void *db = (char *)dw + (size_t)C * ops->storage_bytes;
        ops->layernorm_backward(d, dw, db, a, a, w, mr, mr + N, N, C, NULL, 1, NULL);
    }
    ops->synchronize();
    ops->free(a);
    ops->free(d);
    ops->free(w);
    ops->free(mr);
}

/* weights_wait hook: calls must come -1, 0, ..., GR_LAYERS - 1 in every forward */
struct gr_waits {
    int next, calls, out_of_order;
};
static int gr_wait(void *ctx, int layer) {
    struct gr_waits *w = ctx;
    w->out_of_order += layer != w->next;
    w->next = layer + 1 == GR_LAYERS ? -1 : layer + 1;
    w->calls++;
    return 0;
}

/* GR_STEPS steps on dev with graphs on or off (and a weights_wait hook when waits is not
 * NULL): the losses and the final master weights */
static int gr_run(const struct ops *dev, int graphs, int grad_buffers, struct gr_waits *waits,
                  double *losses, float **master, size_t *n) {
    struct xlmc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (config_parse_string(GR_CONFIG, "selftest graphs config", &cfg) != 0) return -1;
    cfg.train.cuda_graphs = graphs;
    cfg.train.grad_buffers = grad_buffers;
    struct model m;
    struct trainer t;
    memset(&m, 0, sizeof m);
    if (model_create(&m, &cfg, dev) != 0 || model_init_weights(&m, 11) != 0) return -1;
    struct comm *comm = comm_local_create();
    int rc = trainer_init(&t, &m, comm);
    if (waits) {
        *waits = (struct gr_waits){.next = -1};
        m.weights_wait = gr_wait;
        m.weights_wait_ctx = waits;
    }
    static int32_t ids[GR_MICRO][GR_B * GR_T], langs[GR_MICRO][GR_B * GR_T];
    static int32_t lengths[GR_MICRO][GR_B], targets[GR_MICRO][GR_B * GR_T];
    struct batch micro[GR_MICRO];
    for (int s = 0; rc == 0 && s < GR_STEPS; s++) {
        if (s == 2) gr_grow_scratch(dev, graphs ? 4096 : 1024); /* past the eager run's */
        for (int i = 0; i < GR_MICRO; i++)
            gr_batch(s, i, ids[i], langs[i], lengths[i], targets[i], &micro[i]);
        struct step_stats st;
        rc = trainer_step(&t, micro, GR_MICRO, &st);
        losses[s] = st.loss;
    }
    if (rc == 0) {
        trainer_master_to_host(&t);
        *n = m.num_params;
        *master = malloc(m.num_params * sizeof(float));
        if (*master) memcpy(*master, m.master, m.num_params * sizeof(float));
    }
    trainer_free(&t);
    comm_destroy(comm);
    model_destroy(&m);
    return rc || !*master ? -1 : 0;
}

int selftest_graphs(const struct ops *dev, FILE *log) {
    log = log ? log : stdout;
    if (!dev->graph_begin) {
        fprintf(log, "ok   graphs: the %s backend records none (nothing to compare)\n", dev->name);
        return 0;
    }
    double loss[4][GR_STEPS];
    float *master[4] = {NULL, NULL, NULL, NULL};
    size_t n[4] = {0, 0, 0, 0};
    long before[4], mid[4], after[4];
    struct gr_waits waits;
    dev->graph_counts(before);
    int failures = gr_run(dev, 0, 0, NULL, loss[0], &master[0], &n[0]) != 0;
    dev->graph_counts(mid);
    failures += gr_run(dev, 1, 0, NULL, loss[1], &master[1], &n[1]) != 0;
    dev->graph_counts(after);
    failures += gr_run(dev, 1, 1, NULL, loss[2], &master[2], &n[2]) != 0;
    long split0[4], split1[4];
    dev->graph_counts(split0);
    failures += gr_run(dev, 1, 0, &waits, loss[3], &master[3], &n[3]) != 0;
    dev->graph_counts(split1);
    if (failures) {
        fprintf(log, "FAIL graphs: a training step failed\n");
        goto done;
    }
    for (int s = 0; s < GR_STEPS; s++) {
        int same = !memcmp(&loss[0][s], &loss[1][s], sizeof(double));
        fprintf(log, "%s graphs step %d loss %.9f replayed, %.9f launched one by one\n",
                same ? "ok  " : "FAIL", s, loss[1][s], loss[0][s]);
        failures += !same;
    }
    int same = n[0] == n[1] && !memcmp(master[0], master[1], n[0] * sizeof(float));
    fprintf(log, "%s graphs master weights after %d steps: %s\n", same ? "ok  " : "FAIL", GR_STEPS,
            same ? "bit-identical" : "differ");
    failures += !same;
    same = n[2] == n[1] && !memcmp(master[2], master[1], n[1] * sizeof(float));
    fprintf(log, "%s graphs master weights with one gradient buffer, not two: %s\n",
            same ? "ok  " : "FAIL", same ? "bit-identical" : "differ");
    failures += !same;
    same = n[3] == n[1] && !memcmp(master[3], master[1], n[1] * sizeof(float)) &&
           !memcmp(loss[3], loss[1], sizeof loss[1]);
    /* each micro-batch's forward waits for the non-layer tensors and every layer, and runs
     * in 2L + 1 segments (L forward, L + 1 backward), most of them replayed */
    long split_segs = 0, split_replayed = split1[2] - split0[2];
    for (int i = 0; i < 3; i++)
        split_segs += split1[i] - split0[i];
    int waits_ok = !waits.out_of_order && waits.calls == GR_STEPS * GR_MICRO * (GR_LAYERS + 1) &&
                   split_segs == GR_STEPS * GR_MICRO * (2 * GR_LAYERS + 1) && split_replayed > 0;
    fprintf(log,
            "%s graphs with a weights wait before each layer (a forward segment per layer): "
            "losses and master weights %s; %d waits, %d out of order; %ld segments, %ld "
            "replayed\n",
            same && waits_ok ? "ok  " : "FAIL", same ? "bit-identical" : "differ", waits.calls,
            waits.out_of_order, split_segs, split_replayed);
    failures += !same || !waits_ok;
    /* segments per micro-batch: the forward, one per layer, the embeddings; recorded and
     * replayed per gradient buffer */
    struct xlmc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    config_parse_string(GR_CONFIG, "selftest graphs config", &cfg);
    long bufs = trainer_grad_buffers(&cfg.train, dev, GR_MICRO);
    long segs = GR_LAYERS + 2, d[4];
    for (int i = 0; i < 4; i++)
        d[i] = after[i] - mid[i];
    int eager_untouched = !memcmp(before, mid, sizeof before);
    /* each buffer's first micro-batch runs eager and every later one recorded graphs; the
     * scratch's move refuses the segments whose partial sums live there, and each refused one
     * is recorded anew */
    long total = GR_STEPS * GR_MICRO * segs;
    int counts_ok = eager_untouched && d[0] == bufs * segs && d[3] >= 1 && d[3] <= bufs * segs &&
                    d[1] == bufs * segs + d[3] && d[0] + d[1] + d[2] == total;
    fprintf(log,
            "%s graphs segments (%ld gradient buffers): %ld eager, %ld recorded, %ld replayed, "
            "%ld refused (a moved buffer) of %ld; graphs off: %s\n",
            counts_ok ? "ok  " : "FAIL", bufs, d[0], d[1], d[2], d[3], total,
            eager_untouched ? "none used" : "some used");
    failures += !counts_ok;
done:
    for (int i = 0; i < 4; i++)
        free(master[i]);
    return failures;
}
