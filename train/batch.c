/* batch.c — loader windows into the batch the model takes (see train/batch.h). */
#include "train/batch.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static void batch_buf_reserve(struct batch_buf *buf, int rows, int T) {
    if (rows > buf->cap_rows || T != buf->T) {
        batch_buf_free(buf);
        size_t n = (size_t)rows * (size_t)T;
        buf->ids = xmalloc(n * sizeof(int32_t));
        buf->targets = xmalloc(n * sizeof(int32_t));
        buf->langs = xmalloc(n * sizeof(int32_t));
        buf->positions = xmalloc(n * sizeof(int32_t));
        buf->lengths = xmalloc((size_t)rows * sizeof(int32_t));
        buf->cap_rows = rows;
        buf->T = T;
    }
}

void batch_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                        const int32_t *langs, int rows, int T, uint32_t row0) {
    batch_buf_reserve(buf, rows, T);
    // windows (rows, T+1) -> ids (rows, T) = w[0..T-1], targets (rows, T) = w[1..T]
    for (int r = 0; r < rows; r++) {
        const int32_t *w = windows + (size_t)r * (size_t)(T + 1);
        int32_t *ids = buf->ids + (size_t)r * (size_t)T;
        memcpy(ids, w, (size_t)T * sizeof(int32_t));
        memcpy(buf->targets + (size_t)r * (size_t)T, w + 1, (size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++)
            buf->langs[(size_t)r * (size_t)T + (size_t)t] = langs[r];
        buf->lengths[r] = T;
    }
    b->B = rows;
    b->T = T;
    b->ids = buf->ids;
    b->targets = buf->targets;
    b->langs = buf->langs;
    b->lengths = buf->lengths;
    b->row0 = row0;
    b->positions = NULL;
    b->bidirectional = 0;
}

void batch_mlm_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                            const int32_t *langs, int rows, int T, uint32_t row0,
                            const struct mlm_opts *o, uint64_t seed, uint64_t step) {
    // The CLM batch's ids, langs and lengths are exactly MLM's inputs before masking; its
    // next-token targets are overwritten by the mask's.
    batch_from_windows(buf, b, windows, langs, rows, T, row0);
    mlm_mask(o, seed, step, row0, rows, T, buf->lengths, buf->ids, buf->targets);
    b->bidirectional = 1;
}

void batch_tlm_from_block(struct batch_buf *buf, struct batch *b, const struct pairs_block *blk,
                          const struct mlm_opts *o, uint64_t seed, uint64_t step) {
    const int rows = blk->rows, T = blk->T;
    const size_t n = (size_t)rows * (size_t)T;
    batch_buf_reserve(buf, rows, T);
    memcpy(buf->ids, blk->ids, n * sizeof(int32_t));
    memcpy(buf->positions, blk->positions, n * sizeof(int32_t));
    memcpy(buf->langs, blk->langs, n * sizeof(int32_t));
    memcpy(buf->lengths, blk->lengths, (size_t)rows * sizeof(int32_t));
    mlm_mask(o, seed, step, blk->row0, rows, T, buf->lengths, buf->ids, buf->targets);
    b->B = rows;
    b->T = T;
    b->ids = buf->ids;
    b->targets = buf->targets;
    b->langs = buf->langs;
    b->lengths = buf->lengths;
    b->row0 = blk->row0;
    b->positions = buf->positions;
    b->bidirectional = 1;
}

void batch_buf_free(struct batch_buf *buf) {
    free(buf->positions);
    free(buf->ids);
    free(buf->targets);
    free(buf->langs);
    free(buf->lengths);
    memset(buf, 0, sizeof *buf);
}
