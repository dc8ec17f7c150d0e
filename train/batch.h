/* batch.h — the batch a step's loader windows become: ids and next-token targets. */
#ifndef XLMC_BATCH_H
#define XLMC_BATCH_H

#include "core/model.h"
#include "data/pairs.h"
#include "train/mlm.h"

#include <stdint.h>

/* Buffers of one batch of B rows x T positions built from loader windows. */
struct batch_buf {
    int32_t *ids, *targets, *langs, *lengths; /* (B,T) (B,T) (B,T) (B) */
    int32_t *positions;                       /* (B,T): TLM's restarted positions */
    int cap_rows, T;
};
/* Turn `rows` windows (rows, T+1) with a language per row into a batch: ids = window[0..T-1],
 * targets = window[1..T], every position counted. b points into buf. */
void batch_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                        const int32_t *langs, int rows, int T, uint32_t row0);
/* MLM on the same windows: ids = window[0..T-1] (as CLM; window[T] unused), every position
 * real (lengths = T), then mlm_mask(o, seed, step, row0, ...) picks the predicted positions
 * and corrupts their inputs; targets = original id there, -1 elsewhere; bidirectional = 1.
 * seed is the run's seed, step the optimizer step: the mask of global row row0 + r does not
 * depend on world size or micro-batch split. */
void batch_mlm_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                            const int32_t *langs, int rows, int T, uint32_t row0,
                            const struct mlm_opts *o, uint64_t seed, uint64_t step);
/* TLM: a block of pair rows (data/pairs.h: ids, restarted positions, a language per part,
 * lengths, right padding) masked by mlm_mask(o, seed, step, blk->row0, ...) as MLM;
 * bidirectional = 1, positions set. */
void batch_tlm_from_block(struct batch_buf *buf, struct batch *b, const struct pairs_block *blk,
                          const struct mlm_opts *o, uint64_t seed, uint64_t step);
void batch_buf_free(struct batch_buf *buf);

#endif
