/* gpu_model_sim.c — one training step of the real trainer in cudasim, counted (gpu_model.h). */
#include "tests/bench/gpu_model.h"

#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/util.h"
#include "kernels/ops.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

/* ---- a communicator that claims `world` ranks and is alone: every sum is its own value ----
 * The trainer then takes the path it takes on `world` GPUs (overlapped all-reduce started
 * per layer on the last micro-batch) while nothing travels; the model prices the traffic. */
struct fake_comm {
    size_t *bytes, n, cap;
};

static int fake_sum_f32(struct comm *c, float *x, size_t n) {
    (void)c, (void)x, (void)n;
    cudasim_count_mark("ar_sync");
    return 0;
}
static int fake_start(struct comm *c, float *x, size_t n) {
    struct fake_comm *f = c->impl;
    (void)x;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->bytes = xrealloc(f->bytes, f->cap * sizeof *f->bytes);
    }
    f->bytes[f->n++] = n * sizeof(float);
    cudasim_count_mark("ar_start");
    return 0;
}
/* one bucket = one NCCL group: priced as one collective of the bucket's bytes */
static int fake_bucket_start(struct comm *c, float *const *x, const size_t *n, int k) {
    size_t total = 0;
    for (int i = 0; i < k; i++)
        total += n[i];
    return fake_start(c, x[0], total);
}
static int fake_wait(struct comm *c) {
    (void)c;
    cudasim_count_mark("ar_wait");
    return 0;
}
static int fake_f64(struct comm *c, double *x, size_t n) {
    (void)c, (void)x, (void)n;
    cudasim_count_mark("host");
    return 0;
}
static int fake_max(struct comm *c, int *x, size_t n) {
    (void)c, (void)x, (void)n;
    cudasim_count_mark("host");
    return 0;
}
static int fake_bcast(struct comm *c, void *b, size_t bytes, int root) {
    (void)c, (void)b, (void)bytes, (void)root;
    return 0;
}
static int fake_barrier(struct comm *c) {
    (void)c;
    return 0;
}
static void fake_abort(struct comm *c, int code) {
    (void)c;
    exit(code);
}

/* ---- the micro-batch mark: the forward starts with the embedding ---- */
static struct ops g_inner, g_marked;
static void marked_embed_forward(void *out, const int32_t *ids, const int32_t *langs,
                                 const int32_t *pos, const void *wte, const void *wpe,
                                 const void *wlang, int B, int T, int C) {
    cudasim_count_mark("micro");
    g_inner.embed_forward(out, ids, langs, pos, wte, wpe, wlang, B, T, C);
}

int gpu_model_simulate(const char *config_path, const int *Bs, int runs, int world,
                       int sample_blocks, struct sim_run *out) {
    const int n_micro = 1;
    memset(out, 0, (size_t)runs * sizeof *out);
    struct xlmc_config cfg;
    if (config_load(config_path, &cfg)) return -1;
    int B = 1;
    for (int i = 0; i < runs; i++)
        B = Bs[i] > B ? Bs[i] : B;
    cfg.train.micro_batch = B;
    int T = cfg.train.seq_len;
    char why[256] = "";
    /* Zeroed allocations from here on, the backend's own included: blocks that sampling
     * skips leave finite values behind. */
    cudasim_count_start(CUDASIM_COUNT_SKIP_MATH | CUDASIM_COUNT_ZERO_ALLOC, sample_blocks);
    cudasim_count_stop();
    /* the shapes of the config, in fp16 (the precision the issue prices) */
    const struct ops *sim = cudasim_ops_cuda(OPS_FP16, 0, why, sizeof why);
    if (!sim) {
        fprintf(stderr, "gpu_model: the cudasim backend did not open: %s\n", why);
        return -1;
    }
    g_inner = *sim;
    g_marked = *sim;
    g_marked.embed_forward = marked_embed_forward;

    double t0 = now_seconds();
    struct model m;
    if (model_create(&m, &cfg, &g_marked)) return -1;
    model_init_weights(&m, 1);
    struct fake_comm fc = {0};
    struct comm c = {.name = "model",
                     .rank = 0,
                     .world = world,
                     .local_rank = 0,
                     .allreduce_sum_f32 = fake_sum_f32,
                     .allreduce_sum_f32_start = fake_start,
                     .allreduce_bucket_start = fake_bucket_start,
                     .allreduce_wait = fake_wait,
                     .allreduce_sum_f64 = fake_f64,
                     .allreduce_max_int = fake_max,
                     .broadcast = fake_bcast,
                     .barrier = fake_barrier,
                     .abort = fake_abort,
                     .impl = &fc};
    struct trainer t;
    if (trainer_init(&t, &m, &c)) return -1;

    /* full rows of random real tokens (ids above XLM's 14 specials), next-token targets */
    int V = cfg.model.vocab_size, rows = B * n_micro;
    size_t n = (size_t)rows * (size_t)T;
    int32_t *ids = xmalloc(n * sizeof *ids), *langs = xmalloc(n * sizeof *langs);
    int32_t *targets = xmalloc(n * sizeof *targets);
    int32_t *lengths = xmalloc((size_t)rows * sizeof *lengths);
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = 14 + (int32_t)(r % (uint64_t)(V - 14));
        langs[i] = (int32_t)((i / (size_t)T) % 2);
    }
    for (int b = 0; b < rows; b++) {
        lengths[b] = T;
        for (int p = 0; p < T; p++)
            targets[b * T + p] = p + 1 < T ? ids[(size_t)b * T + p + 1] : -100;
    }
    int rc = 0;
    /* At each batch size one step first, counted and thrown away: it pays what only the
     * first step at a shape pays (the master weights' upload, the activations' zeroed
     * allocation, grown scratch), so the priced steps are steady-state ones and the
     * extrapolation between them sees only what grows with the batch. (Without the discarded
     * step at the second size, its three allocation memsets were extrapolated to 93 launches
     * and gigabytes of memset.) */
    for (int run = 0; run < runs && rc == 0; run++) {
        struct batch micro = {.B = Bs[run],
                              .T = T,
                              .ids = ids,
                              .langs = langs,
                              .lengths = lengths,
                              .targets = targets,
                              .row0 = 0};
        struct step_stats st;
        fc.n = 0;
        cudasim_count_start(CUDASIM_COUNT_SKIP_MATH | CUDASIM_COUNT_ZERO_ALLOC, sample_blocks);
        rc = trainer_step(&t, &micro, n_micro, &st);
        cudasim_count_stop();
        if (rc) break;
        fc.n = 0;
        cudasim_count_start(CUDASIM_COUNT_SKIP_MATH | CUDASIM_COUNT_ZERO_ALLOC, sample_blocks);
        rc = trainer_step(&t, &micro, n_micro, &st);
        cudasim_count_stop();
        if (rc == 0 && st.skipped) {
            /* the optimizer did not run: the counts would miss it */
            fprintf(stderr,
                    "gpu_model: the simulated step overflowed and was skipped "
                    "(loss %g)\n",
                    st.loss);
            rc = -1;
        }
        struct sim_run *o = &out[run];
        const struct cudasim_record *rec;
        o->n = cudasim_count_events(&rec);
        o->rec = xmalloc((o->n ? o->n : 1) * sizeof *rec);
        memcpy(o->rec, rec, o->n * sizeof *rec);
        o->n_ar = fc.n;
        o->ar_bytes = xmalloc((fc.n ? fc.n : 1) * sizeof *fc.bytes);
        memcpy(o->ar_bytes, fc.bytes, fc.n * sizeof *fc.bytes);
        o->B = Bs[run];
        o->T = T;
        o->n_micro = n_micro;
        o->wall_s = now_seconds() - t0;
        t0 = now_seconds();
    }

    free(fc.bytes);
    free(ids);
    free(langs);
    free(targets);
    free(lengths);
    trainer_free(&t);
    model_destroy(&m);
    return rc;
}

void sim_run_free(struct sim_run *r) {
    free(r->rec);
    free(r->ar_bytes);
    memset(r, 0, sizeof *r);
}
