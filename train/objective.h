/* objective.h — the objectives of a run taken in turn, as XLM alternates them: batch b of the
 * run (b = optimizer steps + skipped fp16 steps before it) trains objectives[b % n]. Each
 * objective entry has its own data stream and loader state, so resuming restores every stream
 * where it was, on any world size (its data order is keyed by the run's seed, mixed with the
 * objective's kind for MLM and TLM streams):
 *   clm, mlm          windows of every language, drawn by lang_ratio (the run's default stream)
 *   clm:L, mlm:L      windows of language L only (lang_ratio one-hot on L)
 *   tlm:L1-L2         aligned sentence pairs of L1 and L2 (data/pairs.h)
 * A batch of an MLM or TLM objective is masked as XLM's mask_out (train/mlm.h), keyed by
 * (seed, b, global row), and attends both ways; the trainer's denominator is its count of
 * predicted positions (targets >= 0). */
#ifndef XLMC_OBJECTIVE_H
#define XLMC_OBJECTIVE_H

#include "core/config.h"
#include "core/loader_state.h"
#include "core/model.h"
#include "data/loader.h"
#include "data/pairs.h"
#include "train/batch.h"

#include <stddef.h>
#include <stdint.h>

struct objective_stream {
    struct objective obj;
    char name[24];             /* "clm", "mlm:de", "tlm:de-en" */
    struct loader *windows;    /* CLM, MLM */
    struct pairs *pairs;       /* TLM (data/pairs.h) */
    struct pairs *valid_pairs; /* TLM: the valid split's pairs (evaluation), or NULL */
};

struct objective_set {
    int n;
    struct objective_stream s[XLMC_MAX_OBJECTIVES];
};

/* "clm", "mlm:de", "tlm:de-en" for o (languages by the model's codes). */
void objective_name(const struct objective *o, const struct model_config *m, char *out, size_t len);

/* The objective index that batch b of the run trains. */
int objective_of_batch(const struct train_config *tc, long b);

/* Open one stream per objective of cfg on the train split of `base->dir` (base gives the
 * geometry, rank, seed and vocabulary; its lang_ratio is replaced per objective). An
 * objective whose language has no windows, or a tlm without pair shards, is refused with a
 * message naming [train] objectives and the directory. 0 or -1 (printed; set closed). */
int objectives_open(struct objective_set *set, const struct xlmc_config *cfg,
                    const struct loader_opts *base);
void objectives_close(struct objective_set *set);

/* States of every stream into st[0..n-1] / restored from them. */
void objectives_get_state(const struct objective_set *set, struct loader_state *st);
int objectives_set_state(struct objective_set *set, const struct loader_state *st);

/* The next step of stream k: this rank's blocks built into batches[0..] (bufs hold them).
 * b is the run's batch index (the MLM mask key). Returns the number of batches, or -1. */
int objectives_next_step(struct objective_set *set, int k, const struct xlmc_config *cfg,
                         uint64_t b, struct batch_buf *bufs, struct batch *batches, int max);

/* Mask an MLM/TLM batch in place (ids -> masked ids, targets -> originals at the predicted
 * positions, -1 elsewhere) with the config's word_pred and 80/10/10 split. */
void objective_mask(const struct xlmc_config *cfg, uint64_t key_step, uint32_t row0, int rows,
                    int T, const int32_t *lengths, int32_t *ids, int32_t *targets);

#endif
