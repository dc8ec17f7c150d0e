/* trainer.c — one data-parallel optimizer step (see trainer.h). */
#include "core/trainer.h"
#include "core/optim.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *alloc_or_null(const struct ops *ops, size_t bytes) {
    return ops->alloc(bytes ? bytes : 1);
}

static int trainer_weights_wait(void *ctx, int layer);
static int weights_sync(struct trainer *t);

int trainer_init(struct trainer *t, struct model *m, struct comm *c) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->comm = c;
    const struct ops *ops = m->ops;
    size_t n = m->num_params;
    t->grad_acc = t->acc_buf = alloc_or_null(ops, n * sizeof(float));
    t->adam_m = alloc_or_null(ops, n * sizeof(float));
    t->adam_v = alloc_or_null(ops, n * sizeof(float));
    t->decay_mask = alloc_or_null(ops, n);
    int device = !ops->host_memory;
    if (device) t->master_dev = alloc_or_null(ops, n * sizeof(float));
    if (!t->grad_acc || !t->adam_m || !t->adam_v || !t->decay_mask || (device && !t->master_dev)) {
        trainer_free(t);
        return xlmc_error("out of %s memory for the optimizer state (%zu parameters: "
                          "accumulator and two Adam moments, %zu bytes)",
                          ops->name, n, (device ? 4 : 3) * n * sizeof(float) + n);
    }
    uint8_t *mask = optim_decay_mask(m);
    ops->to_device(t->decay_mask, mask, n);
    free(mask);
    scaler_init(&t->scaler, &m->cfg.train);
    trainer_master_changed(t);
    if (m->cfg.train.shard_optimizer && c && c->world > 1 && c->allgather_shards) {
        /* 64-element bounds keep every shard's vectors aligned for the update's loads */
        size_t q = (n + (size_t)c->world - 1) / (size_t)c->world;
        q = (q + 63) / 64 * 64;
        t->shard_lo = xcalloc((size_t)c->world + 1, sizeof *t->shard_lo);
        t->shard_q = q;
        t->rank_weight = xcalloc((size_t)c->world, sizeof *t->rank_weight);
        for (int r = 0; r <= c->world; r++)
            t->shard_lo[r] = (size_t)r * q < n ? (size_t)r * q : n;
        /* the weights arrive bucket by bucket during the next forward */
        if (c->gather_bucket_start && c->gather_bucket_wait &&
            m->cfg.model.n_layers + 1 <= COMM_GATHER_BUCKETS) {
            m->weights_wait = trainer_weights_wait;
            m->weights_wait_ctx = t;
        }
    }
    return 0;
}

int trainer_gather_state(struct trainer *t) {
    if (!t->shard_lo || !t->state_partial) return 0;
    struct model *m = t->m;
    struct comm *c = t->comm;
    if (weights_sync(t)) return -1;
    float *master = t->master_dev ? t->master_dev : m->master;
    /* where the weights are the master, allgather_shards already brought it whole */
    int rc = (master != (float *)m->weights &&
              c->allgather_shards(c, master, t->shard_lo, sizeof(float))) ||
             c->allgather_shards(c, t->adam_m, t->shard_lo, sizeof(float)) ||
             c->allgather_shards(c, t->adam_v, t->shard_lo, sizeof(float));
    if (rc)
        return xlmc_error("step %ld: gathering the optimizer's shards over %d ranks failed",
                          t->step, c->world);
    t->state_partial = 0;
    return 0;
}

void trainer_master_to_host(struct trainer *t) {
    if (!t->master_host_stale) return;
    t->m->ops->to_host(t->m->master, t->master_dev, t->m->num_params * sizeof(float));
    t->master_host_stale = 0;
}

void trainer_master_changed(struct trainer *t) {
    t->master_dev_stale = t->master_dev != NULL;
    t->master_host_stale = 0;
}

void trainer_free(struct trainer *t) {
    if (!t->m) return;
    const struct ops *ops = t->m->ops;
    if (t->acc_buf) ops->free(t->acc_buf);
    if (t->adam_m) ops->free(t->adam_m);
    if (t->adam_v) ops->free(t->adam_v);
    if (t->decay_mask) ops->free(t->decay_mask);
    if (t->master_dev) ops->free(t->master_dev);
    free(t->shard_lo);
    free(t->rank_weight);
    if (t->owner_recv) ops->free(t->owner_recv);
    if (t->m->weights_wait_ctx == t) t->m->weights_wait = NULL, t->m->weights_wait_ctx = NULL;
    memset(t, 0, sizeof *t);
}

static long count_targets(const struct batch *b) {
    long n = 0;
    if (!b->targets) return 0;
    for (size_t i = 0; i < (size_t)b->B * (size_t)b->T; i++)
        n += b->targets[i] >= 0;
    return n;
}

int trainer_grad_buffers(const struct train_config *tc, const struct ops *ops, int n_micro) {
    int k = tc->grad_buffers ? tc->grad_buffers : ops->host_memory ? 1 : OPS_GRAD_SOURCES_MAX;
    if (k > n_micro) k = n_micro;
    return k < 1 ? 1 : k;
}

int trainer_reserve(struct trainer *t, int n_micro) {
    return model_grad_buffers(t->m, trainer_grad_buffers(&t->m->cfg.train, t->m->ops, n_micro));
}

/* Adds the list into the accumulator (one launch on a GPU) and empties it. */
static void acc_flush(const struct trainer *t, struct ops_tensor_list *l) {
    if (l->count) t->m->ops->grad_accumulate_list(l);
    l->count = 0;
}

/* The stacked tensors (one slice per layer) are qw ... ln2b in the arena's order. */
static int is_layer_tensor(int id) {
    return id >= P_QW && id <= P_LN2B;
}

/* Slices [off[i], off[i] + len[i]) of the arena, i < k, cut at the shard bounds: piece j is
 * [off[j], + n[j]) owned by root[j]. */
struct pieces {
    size_t *off, *n, count;
    int *root;
};

static struct pieces cut_at_shards(const struct trainer *t, const size_t *off, const size_t *len,
                                   int k) {
    const size_t *lo = t->shard_lo;
    int world = t->comm->world;
    size_t cap = (size_t)k * ((size_t)world + 1) + 1;
    struct pieces p = {xmalloc(cap * sizeof *p.off), xmalloc(cap * sizeof *p.n), 0,
                       xmalloc(cap * sizeof *p.root)};
    for (int i = 0; i < k; i++) {
        size_t a = off[i], end = a + len[i];
        int r = 0;
        while (r + 1 < world && lo[r + 1] <= a)
            r++;
        for (; a < end; r++) {
            size_t b = r + 1 < world && lo[r + 1] < end ? lo[r + 1] : end;
            if (b > a) {
                p.off[p.count] = a;
                p.n[p.count] = b - a;
                p.root[p.count++] = r;
            }
            a = b;
        }
    }
    return p;
}

static void pieces_free(struct pieces *p) {
    free(p->off);
    free(p->n);
    free(p->root);
}

/* The bucket's ranges [off[i], + len[i]) of the accumulator, each piece summed on the rank
 * that owns it. */
static int reduce_to_owners(const struct trainer *t, const size_t *off, const size_t *len, int k) {
    struct pieces p = cut_at_shards(t, off, len, k);
    float **px = xmalloc((p.count + 1) * sizeof *px);
    for (size_t j = 0; j < p.count; j++)
        px[j] = t->grad_acc + p.off[j];
    int rc = t->comm->reduce_bucket_start(t->comm, px, p.n, p.root, (int)p.count);
    pieces_free(&p);
    free(px);
    return rc;
}

/* The fp16 gradient path: sharded, fp16 gradients (in the CPU backend's fp32 storage there), a
 * communicator that sends to owners. */
static int trainer_to_owner_possible(const struct trainer *t) {
    return t->shard_lo && t->m->ops->precision == OPS_FP16 && t->comm->gather_to_owner_start &&
           t->rank_weight;
}

/* One micro-batch per rank, fp16: the bucket's ranges of this micro-batch's storage gradient
 * go as they are to their owners (half the bytes of an fp32 sum), into t->owner_recv: the
 * owner's row r (shard_q elements) holds rank r's values of its shard. */
static int send_to_owners(const struct trainer *t, const size_t *off, const size_t *len, int k) {
    size_t sb = t->m->ops->storage_bytes;
    struct pieces p = cut_at_shards(t, off, len, k);
    const void **px = xmalloc((p.count + 1) * sizeof *px);
    void **recv = xmalloc((p.count + 1) * sizeof *recv);
    for (size_t j = 0; j < p.count; j++) {
        px[j] = (const char *)t->m->grads + p.off[j] * sb;
        recv[j] = (char *)t->owner_recv + (p.off[j] - t->shard_lo[p.root[j]]) * sb;
    }
    int rc = t->comm->gather_to_owner_start(t->comm, px, p.n, p.root, recv, t->shard_q * sb,
                                            (int)p.count, sb);
    pieces_free(&p);
    free(px);
    free(recv);
    return rc;
}

/* The owner's fp32 sum of every rank's fp16 gradient of its shard, in rank order, each
 * weighed as trainer_accumulate weighs a micro-batch (own count / step count). */
static void sum_own_shard(const struct trainer *t) {
    const struct ops *ops = t->m->ops;
    int world = t->comm->world;
    size_t lo = t->shard_lo[t->comm->rank], hi = t->shard_lo[t->comm->rank + 1];
    size_t row = t->shard_q * ops->storage_bytes;
    for (int r0 = 0; r0 < world && hi > lo; r0 += OPS_GRAD_SOURCES_MAX) {
        struct ops_tensor_list l = {.count = 1, .first = r0 == 0, .stride = row};
        for (int r = r0; r < world && r < r0 + OPS_GRAD_SOURCES_MAX; r++)
            l.weight[l.sources++] = t->rank_weight[r];
        l.t[0].acc = t->grad_acc + lo;
        l.t[0].grad = (const char *)t->owner_recv + (size_t)r0 * row;
        l.t[0].n = hi - lo;
        ops->grad_accumulate_list(&l);
    }
}

/* The arena ranges of bucket `layer` (-1: the non-layer tensors, else layer l's slices of the
 * stacked ones): off[i], len[i] for i < the count returned (at most P_COUNT). */
static int bucket_ranges(const struct model *m, int layer, size_t *off, size_t *len) {
    int k = 0;
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        if (!p->numel || is_layer_tensor(id) != (layer >= 0)) continue;
        size_t slice = p->numel / (size_t)p->layers;
        off[k] = p->offset + (layer >= 0 ? (size_t)layer * slice : 0);
        len[k++] = layer >= 0 ? slice : p->numel;
    }
    return k;
}

/* The updated weights to every rank: bucket by bucket in forward's order (the non-layer
 * tensors, then layers 0 ... L-1), each piece from its owner, left to arrive while the next
 * forward computes (its weights_wait hook waits for each); or, where the communicator has no
 * buckets, in one blocking call. */
static int gather_weights(struct trainer *t) {
    struct model *m = t->m;
    struct comm *c = t->comm;
    size_t sb = m->ops->storage_bytes;
    if (m->weights_wait != trainer_weights_wait)
        return c->allgather_shards(c, m->weights, t->shard_lo, sb);
    for (int layer = -1; layer < m->cfg.model.n_layers; layer++) {
        size_t off[P_COUNT], len[P_COUNT];
        int k = bucket_ranges(m, layer, off, len);
        struct pieces p = cut_at_shards(t, off, len, k);
        void **px = xmalloc((p.count + 1) * sizeof *px);
        for (size_t j = 0; j < p.count; j++)
            px[j] = (char *)m->weights + p.off[j] * sb;
        int rc = c->gather_bucket_start(c, layer + 1, px, p.n, p.root, (int)p.count, sb);
        pieces_free(&p);
        free(px);
        if (rc) return -1;
    }
    return 0;
}

/* model's weights_wait hook: the bucket of `layer` (gather_weights' numbering) in place */
static int trainer_weights_wait(void *ctx, int layer) {
    struct trainer *t = ctx;
    if (t->comm->gather_bucket_wait(t->comm, layer + 1))
        return xlmc_error("step %ld: waiting for the updated weights of %s%d failed", t->step,
                          layer < 0 ? "the embeddings" : "layer ", layer < 0 ? 0 : layer);
    return 0;
}

/* Every gather bucket in place (before the update writes the weights again, and before the
 * state is gathered). */
static int weights_sync(struct trainer *t) {
    if (t->m->weights_wait != trainer_weights_wait) return 0; /* not this trainer's hook */
    for (int layer = -1; layer < t->m->cfg.model.n_layers; layer++)
        if (trainer_weights_wait(t, layer)) return -1;
    return 0;
}

/* model_backward's grad_ready hook on the last micro-batch: layer >= 0 gives the layer-l
 * slices of the stacked tensors, -1 the non-layer tensors. The slices are added into the
 * accumulator on the backend's stream and their sums over ranks started as one bucket (one
 * NCCL group: one latency per layer instead of one per tensor) while backward goes on. */
static void trainer_grad_ready(void *ctx, int layer) {
    struct trainer *t = ctx;
    struct model *m = t->m;
    const struct ops *ops = m->ops;
    float *x[P_COUNT];
    size_t off[P_COUNT], len[P_COUNT];
    int k = bucket_ranges(m, layer, off, len);
    /* the bucket's slices, added with one launch (they were one launch each: ~100 per
     * micro-batch at 6 layers), from every gradient buffer written since the last pass */
    struct ops_tensor_list add = t->ovl_add;
    if (t->to_owner) add.sources = 0; /* the owners add the fp16 gradients themselves */
    for (int i = 0; i < k; i++) {
        if (add.sources) {
            if (add.count == OPS_TENSOR_LIST_MAX) acc_flush(t, &add);
            add.t[add.count].acc = t->grad_acc + off[i];
            add.t[add.count].grad = (const char *)m->grad_arena + off[i] * ops->storage_bytes;
            add.t[add.count++].n = len[i];
        }
        x[i] = t->grad_acc + off[i];
    }
    acc_flush(t, &add);
    if (t->ovl_failed || !k) return;
    struct comm *c = t->comm;
    if (t->to_owner) {
        t->ovl_failed = send_to_owners(t, off, len, k) != 0;
        return;
    }
    if (t->shard_lo && c->reduce_bucket_start) {
        t->ovl_failed = reduce_to_owners(t, off, len, k) != 0;
        return;
    }
    if (c->allreduce_bucket_start) {
        t->ovl_failed = c->allreduce_bucket_start(c, x, len, k) != 0;
        return;
    }
    for (int i = 0; i < k && !t->ovl_failed; i++)
        t->ovl_failed = c->allreduce_sum_f32_start(c, x[i], len[i]) != 0;
}

/* Forward/backward every micro-batch and sum over ranks: loss, tokens and the scaled
 * gradient in t->grad_acc. */
static int trainer_accumulate(struct trainer *t, const struct batch *micro, int n_micro) {
    struct model *m = t->m;
    const struct ops *ops = m->ops;
    size_t n = m->num_params;
    uint64_t seed = m->cfg.train.seed;
    uint64_t step = (uint64_t)t->step;

    /* The denominator of the mean loss spans the whole global batch, so each micro-batch's
     * gradient is already its share of the global mean: summing is all that is left. */
    double tokens = 0;
    for (int i = 0; i < n_micro; i++)
        tokens += (double)count_targets(&micro[i]);
    struct comm *c = t->comm;
    int to_owner = 0;
    if (trainer_to_owner_possible(t)) {
        /* every rank's count (its slot, the others 0) and how many ranks have exactly one
         * micro-batch: the fp16 gradients go to their owners only when all have */
        double *v = xcalloc((size_t)c->world + 1, sizeof *v);
        v[c->rank] = tokens;
        v[c->world] = n_micro == 1;
        int rc = c->allreduce_sum_f64(c, v, (size_t)c->world + 1);
        tokens = 0;
        for (int r = 0; r < c->world; r++)
            tokens += v[r];
        to_owner = !rc && v[c->world] == (double)c->world;
        for (int r = 0; r < c->world && to_owner; r++) /* trainer_accumulate's weights */
            t->rank_weight[r] = (float)((v[r] > 0 ? v[r] : tokens) / tokens);
        free(v);
        if (rc) tokens = -1;
    } else if (c->allreduce_sum_f64(c, &tokens, 1)) {
        tokens = -1;
    }
    if (tokens < 0)
        return xlmc_error("step %ld: summing the token count over %d ranks failed", t->step,
                          t->comm->world);
    if (tokens <= 0)
        return xlmc_error("step %ld: the global batch has no target token (every label is "
                          "ignored): nothing to learn from",
                          t->step);

    int overlap = m->cfg.train.overlap_allreduce && t->comm->world > 1 &&
                  t->comm->allreduce_sum_f32_start && t->comm->allreduce_wait;
    t->ovl_failed = 0;
    t->to_owner = to_owner && overlap;
    if (t->to_owner && !t->owner_recv) {
        /* zeroed once: the vocabulary's padding rows are never sent and must read as 0 */
        size_t bytes = (size_t)c->world * t->shard_q * ops->storage_bytes;
        if (!(t->owner_recv = ops->alloc(bytes ? bytes : 1)))
            return xlmc_error("step %ld: no memory (%zu bytes) to receive the gradient shards",
                              t->step, bytes);
        ops->memset0(t->owner_recv, bytes);
    }
    t->grad_acc = t->acc_buf;
    int k = trainer_grad_buffers(&m->cfg.train, ops, n_micro);
    if (model_grad_buffers(m, k))
        return xlmc_error("step %ld: no memory for %d gradient buffers", t->step, k);
    float scale = t->scaler.scale;
    /* fp16: each micro-batch's backward divides by its own token count, so its
     * gradient has the size of a mean-loss gradient (what PyTorch AMP scales) rather than
     * 1/(ranks x micro-batches) of it, which at the ende geometry (524288 tokens, scale 2^16)
     * sank the logits' gradient into fp16 subnormals. The fp32 accumulation then weighs it
     * by count / tokens. fp32 keeps the step's denominator (weight 1). */
    int per_micro = ops->precision == OPS_FP16;
    double sums[2] = {0, 0}; /* the loss over the counted targets, the classified rows */
    /* the gradient buffers written since the accumulator's last pass, with their weights */
    struct ops_tensor_list add = {0};
    for (int i = 0; i < n_micro; i++) {
        long count = 0, own = per_micro ? count_targets(&micro[i]) : 0;
        double denom = own > 0 ? (double)own : tokens;
        float weight = (float)(denom / tokens);
        model_use_grad_buffer(m, i % k);
        if (i % k == 0) add = (struct ops_tensor_list){.first = i == 0, .stride = m->grad_stride};
        add.weight[add.sources++] = weight;
        float loss = model_forward_train(m, &micro[i], seed, step, scale, denom, &count);
        if (loss < 0) return xlmc_error("step %ld: micro-batch %d failed", t->step, i);
        sums[0] += (double)loss * (double)count;
        sums[1] += (double)m->classified;
        int last = i == n_micro - 1, hook = overlap && last;
        if (hook) {
            t->ovl_add = add;
            m->grad_ready = trainer_grad_ready;
            m->grad_ready_ctx = t;
        }
        int failed = model_backward(m, &micro[i], seed, step, scale, denom);
        m->grad_ready = NULL;
        m->grad_ready_ctx = NULL;
        if (failed) return xlmc_error("step %ld: micro-batch %d failed", t->step, i);
        if (hook || (i % k != k - 1 && !last)) continue;
        /* A lone fp32 micro-batch gradient is the sum already: it is used where it lies.
         * Else one pass adds the buffers; the first initializes the accumulator (no
         * separate zeroing pass). */
        if (n_micro == 1 && weight == 1.0f && ops->storage_bytes == sizeof(float)) {
            t->grad_acc = m->grads;
            continue;
        }
        add.count = 1;
        add.t[0].acc = t->grad_acc;
        add.t[0].grad = m->grad_arena;
        add.t[0].n = n;
        ops->grad_accumulate_list(&add);
    }
    model_use_grad_buffer(m, 0);
    if (n_micro == 0) ops->memset0(t->grad_acc, n * sizeof(float));
    if (overlap && n_micro == 0) {
        /* Nothing to add, but the other ranks wait for this rank's zeros in each bucket. */
        t->ovl_add = (struct ops_tensor_list){0};
        for (int l = m->cfg.model.n_layers - 1; l >= 0; l--)
            trainer_grad_ready(t, l);
        trainer_grad_ready(t, -1);
    }

    int failed = overlap ? t->comm->allreduce_wait(t->comm) != 0 || t->ovl_failed
                         : t->comm->allreduce_sum_f32(t->comm, t->grad_acc, n) != 0;
    if (failed)
        return xlmc_error("step %ld: summing the gradient (%zu values) over %d ranks failed",
                          t->step, n, t->comm->world);
    if (t->to_owner) sum_own_shard(t);
    if (t->comm->allreduce_sum_f64(t->comm, sums, 2))
        return xlmc_error("step %ld: summing the loss over %d ranks failed", t->step,
                          t->comm->world);

    memset(&t->pending, 0, sizeof t->pending);
    t->pending.loss = sums[0] / tokens;
    t->pending.tokens = (long)tokens;
    t->pending.classified = (long)sums[1];
    t->pending.loss_scale = scale;
    return 0;
}

/* Check, clip, Adam, scaler, step++. */
static int trainer_apply(struct trainer *t, struct step_stats *out) {
    struct model *m = t->m;
    const struct ops *ops = m->ops;
    const struct train_config *tc = &m->cfg.train;
    float scale = t->pending.loss_scale;
    *out = t->pending;

    /* The accumulator still carries the loss scale. Its squared norm in fp64 is finite
     * exactly when every element is, so one pass gives both the overflow flag and the norm;
     * the unscaling then rides along in Adam's grad_scale instead of a pass of its own. */
    size_t lo = 0, hi = m->num_params;
    if (t->shard_lo) lo = t->shard_lo[t->comm->rank], hi = t->shard_lo[t->comm->rank + 1];
    double norm2 = hi > lo ? ops->norm_squared(t->grad_acc + lo, hi - lo) : 0.0;
    int overflow = !isfinite(norm2);
    if (t->shard_lo) {
        /* the shards' sum: an inf or NaN in any shard leaves it non-finite on every rank */
        if (t->comm->allreduce_sum_f64(t->comm, &norm2, 1))
            return xlmc_error("step %ld: summing the gradient norm over %d ranks failed", t->step,
                              t->comm->world);
        overflow = !isfinite(norm2);
    } else if (t->comm->allreduce_max_int(t->comm, &overflow, 1)) {
        /* identical accumulators give identical flags, but a rank must never update alone */
        return xlmc_error("step %ld: agreeing on the overflow flag over %d ranks failed", t->step,
                          t->comm->world);
    }
    out->grad_norm = (float)(sqrt(norm2) / scale);

    if (overflow) {
        if (!t->scaler.enabled)
            return xlmc_error("step %ld: the fp32 gradient holds inf or NaN (loss %g): "
                              "training diverged; lower train.lr or raise train.warmup",
                              t->step, out->loss);
        out->skipped = 1;
        out->lr = 0;
        t->skipped++;
        return scaler_update(&t->scaler, 1);
    }

    /* the last step's weights have arrived (a rank without micro-batches ran no forward to
     * wait for them) before the update writes its shard again */
    if (weights_sync(t)) return -1;
    float coef = optim_clip_coef(sqrt(norm2) / scale, tc->clip_norm);
    out->lr = optim_lr(tc, t->step);
    size_t bytes = m->num_params * sizeof(float);
    if (t->master_dev && t->master_dev_stale) ops->to_device(t->master_dev, m->master, bytes);
    t->master_dev_stale = 0;
    optim_adam_update(m, lo, hi, t->master_dev ? t->master_dev : m->master, t->grad_acc, t->adam_m,
                      t->adam_v, t->decay_mask, out->lr, coef / scale, t->step);
    t->master_host_stale = t->master_dev != NULL;
    if (t->shard_lo) {
        t->state_partial = 1;
        if (gather_weights(t))
            return xlmc_error("step %ld: gathering the updated weights over %d ranks failed",
                              t->step, t->comm->world);
    }
    t->step++;
    return scaler_update(&t->scaler, 0);
}

int trainer_step(struct trainer *t, const struct batch *micro, int n_micro,
                 struct step_stats *out) {
    if (trainer_accumulate(t, micro, n_micro)) return -1;
    if (t->grad_summed && t->grad_summed(t->grad_summed_ctx, t)) return -1;
    return trainer_apply(t, out);
}
