/* trainer.h — one optimizer step over this rank's micro-batches, data parallel.
 *
 * A step: count the target tokens of every micro-batch on every rank (the global
 * denominator); forward + backward each micro-batch with the loss scaled by
 * loss_scale / denominator and add its gradient into the fp32 accumulator; sum the
 * accumulator over ranks; check it for inf/NaN (all ranks agree); on overflow halve the
 * loss scale and skip the update; else clip by the global norm, take the learning rate from
 * the schedule and apply Adam. Because every micro-batch is divided by the token count of the
 * whole step, the step follows the gradient of the mean token loss of the global batch
 * however it is split over ranks and micro-batches (XLM sums micro-batches instead).
 * In fp16 precision the backward divides by the micro-batch's own token count instead (its
 * gradient stays as large as a mean-loss gradient, clear of fp16 subnormals) and the fp32
 * accumulation multiplies by own count / step count: the same sum, in fp32.
 * tests/model/test_fp16_grad_precision measures what that keeps.
 *
 * Training state a checkpoint must save and restore (besides m->master):
 *   t->step                 updates applied so far (the lr schedule, Adam's bias correction
 *                           and the dropout masks follow it); a skipped step does not
 *                           advance it
 *   t->skipped              steps skipped for fp16 overflow (for logs and for a loader that
 *                           counts batches consumed: t->step + t->skipped)
 *   t->adam_m, t->adam_v    Adam moments, fp32, num_params each, same arena layout as
 *                           m->master, in the backend's memory (ops->to_host / to_device)
 *   t->scaler               scaler_save() / scaler_restore() (core/scaler.h)
 * After restoring master weights call model_sync_weights().
 *
 * m->master is host memory (core/model.h) while ops->adam_update works in the backend's
 * memory. On a device backend (!ops->host_memory) the fp32 master weights live in
 * t->master_dev for the whole run, beside the moments and the accumulator: a step moves only
 * scalars (token count, loss, norm, overflow flag) between host and device. m->master is
 * then a host view, uploaded before the first update and after trainer_master_changed()
 * (whoever writes m->master after trainer_init calls it: a checkpoint load does), and
 * refreshed from the device only by trainer_master_to_host() (checkpoints copy the device
 * state themselves when they write it). On the CPU backend m->master is the master.
 *
 * Overlap. With more than one rank the gradient is not summed in one call after the last
 * micro-batch: during the last micro-batch's backward, model_backward's grad_ready hook adds
 * each layer's slices (L-1 ... 0, then the non-layer tensors) into the accumulator and starts
 * their all-reduce as one bucket per layer (comm->allreduce_bucket_start: one NCCL group; or
 * allreduce_sum_f32_start per slice) while backward computes the layers below;
 * the step waits for all of them before the update. Every element sees the same additions
 * in the same order as in the one-call path, and every rank starts the same buckets in the
 * same order (backward's order is fixed), so both paths give bit-identical updates.
 * train.overlap_allreduce = false in the config forces the one-call path.
 *
 * Gradient buffers. Each micro-batch's backward writes a storage gradient; adding it into the
 * fp32 accumulator at once costs a pass over the accumulator per micro-batch. With k buffers
 * (train.grad_buffers) micro-batches 1..k write buffers 0..k-1 and one pass then adds all k in
 * their order (ops->grad_accumulate_list with k sources), and so on: the accumulator is read
 * and written once per k micro-batches instead of once per micro-batch, for k - 1 more storage
 * copies of the parameters. Each element sees the same additions in the same order: the bits
 * do not depend on k. */
#ifndef XLMC_TRAINER_H
#define XLMC_TRAINER_H

#include "core/comm.h"
#include "core/model.h"
#include "core/scaler.h"

#include <stdint.h>

struct step_stats {
    double loss;      /* mean token loss of the global batch (all ranks) */
    long tokens;      /* target tokens of the global batch */
    long classified;  /* rows the output layer ran on, all ranks (MFU's count) */
    float grad_norm;  /* global L2 norm of the mean-loss gradient, before clipping */
    float lr;         /* learning rate used (0 when skipped) */
    float loss_scale; /* loss scale the backward pass used */
    int skipped;      /* 1: fp16 overflow, no update */
};

struct trainer {
    struct model *m;
    struct comm *comm;
    float *grad_acc;        /* (num_params) fp32 summed gradient of the step: acc_buf, or
                             * m->grads itself when one micro-batch's storage is fp32 and
                             * there is no overlap (nothing to add: no copy either) */
    float *acc_buf;         /* (num_params) fp32 accumulator, backend memory */
    float *adam_m, *adam_v; /* (num_params) fp32 Adam moments, backend memory */
    uint8_t *decay_mask;    /* (num_params) weight-decay mask, backend memory */
    float *master_dev;      /* (num_params) device backends only: the fp32 master weights */
    int master_dev_stale;   /* m->master was written: upload it before the next update */
    int master_host_stale;  /* master_dev moved on: m->master lags until master_to_host */
    struct scaler scaler;
    long step, skipped;
    struct step_stats pending; /* what trainer_accumulate measured, for trainer_apply */
    /* Optional, NULL by default: called once per step after the gradient is summed over
     * ranks and before it is checked and applied, with t->grad_acc (num_params fp32, backend
     * memory) holding the loss-scaled sum. Non-zero fails the step. `xlmc selftest` compares
     * the backends' gradients here; tests inject an overflow. */
    int (*grad_summed)(void *ctx, struct trainer *t);
    void *grad_summed_ctx;
    /* the grad_ready hook's state during the last micro-batch: the adds it leaves to the
     * hook, an ops_tensor_list without entries (first: the accumulator is not yet set;
     * sources: the gradient buffers still to add, from the first) */
    struct ops_tensor_list ovl_add;
    int ovl_failed; /* a start failed: the step fails after the wait */
    /* The sharded optimizer (train.shard_optimizer with several ranks; NULL: every rank
     * updates the whole arena). Rank r owns [shard_lo[r], shard_lo[r + 1]) of the arena, a
     * contiguous 1/world of it: its gradient is summed on r alone (comm->reduce_bucket_start;
     * an all-reduce where the communicator has none), r alone runs Adam on it, and
     * comm->allgather_shards then brings its storage weights to every rank. The master
     * weights and the moments outside a rank's shard lag (state_partial) until
     * trainer_gather_state. The norm is the sum of the shards' squared norms over ranks. */
    size_t *shard_lo;  /* world + 1 bounds, multiples of 64 elements but the last */
    size_t shard_q;    /* the bounds' step: shard r is [r q, (r + 1) q) cut at num_params */
    int state_partial; /* master weights and moments whole only in the own shard */
    /* With fp16 storage and one micro-batch on every rank (the ende recipe on 64 GPUs) the
     * gradients do not become fp32 sums on the way: each rank sends its fp16 slices to their
     * owners (comm->gather_to_owner_start), and the owner adds the world's in fp32, in rank
     * order, weighed like micro-batches (rank_weight): the same sum as the accumulator's
     * fp32 reduce, at half its bytes, and no accumulator pass for the other shards. */
    int to_owner;       /* this step takes that path */
    float *rank_weight; /* (world) each rank's weight this step */
    void *owner_recv;   /* (world x shard_q) storage, backend memory: row r from rank r */
};

/* Allocate the accumulator, zeroed Adam moments and the decay mask; scaler from the config;
 * step = skipped = 0. Returns 0, or -1 after printing an error. */
int trainer_init(struct trainer *t, struct model *m, struct comm *c);
void trainer_free(struct trainer *t);

/* The gradient buffers a step of n_micro micro-batches uses: train.grad_buffers, or for its
 * 0 (auto) OPS_GRAD_SOURCES_MAX on a device backend (where the accumulator's passes cost DRAM
 * time) and 1 on a host one (where memory is the scarcer); at most n_micro, at least 1. */
int trainer_grad_buffers(const struct train_config *tc, const struct ops *ops, int n_micro);
/* Allocate the gradient buffers for steps of n_micro micro-batches now (trainer_step does it
 * at the first step that needs them), so that a run learns at its start if they fit.
 * Returns 0, or -1 after printing an error. */
int trainer_reserve(struct trainer *t, int n_micro);

/* One optimizer step over n_micro micro-batches of this rank (n_micro may be 0 on a rank
 * with nothing to do; every rank must call it). Fills *out. Returns 0, or -1 after printing
 * an error: the global batch has no target token, a communicator call failed, the fp16 loss
 * scale fell below its floor, or the fp32 gradient is not finite (diverged). */
int trainer_step(struct trainer *t, const struct batch *micro, int n_micro, struct step_stats *out);

/* Sharded optimizer: every rank gathers the whole master weights and moments (before a
 * checkpoint: every rank must call it). 0, or -1 after printing an error. No-op otherwise. */
int trainer_gather_state(struct trainer *t);
/* Bring m->master up to date with the device's master weights (no-op when it is). */
void trainer_master_to_host(struct trainer *t);
/* m->master was written (restored, imported): the device copy follows it at the next update. */
void trainer_master_changed(struct trainer *t);

#endif
