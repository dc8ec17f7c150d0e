/* batch.h — the batch a step's loader windows become: ids and next-token targets. */
#ifndef XLMC_BATCH_H
#define XLMC_BATCH_H

#include "core/model.h"

#include <stdint.h>

/* Buffers of one batch of B rows x T positions built from loader windows. */
struct batch_buf {
    int32_t *ids, *targets, *langs, *lengths; /* (B,T) (B,T) (B,T) (B) */
    int cap_rows, T;
};
/* Turn `rows` windows (rows, T+1) with a language per row into a batch: ids = window[0..T-1],
 * targets = window[1..T], every position counted. b points into buf. */
void batch_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                        const int32_t *langs, int rows, int T, uint32_t row0);
void batch_buf_free(struct batch_buf *buf);

#endif
