/* pairs.h — aligned sentence pairs (`xlmc prep --pair`) served as TLM rows.
 *
 * A pair shard is a version-2 shard whose sentence 2i is pair i's side in `lang` and sentence
 * 2i+1 its side in `lang2` (schema in data/README.md, "Sentence pairs"). The loader takes the
 * pair shards of a split whose two languages are {lang1, lang2} in either order, in file-name
 * order, and makes each pair one row of T positions, as XLM's concat_batches with
 * reset_positions = True lays out a TLM row (xlm/trainer.py, mlm_step):
 *
 *     ids       </s> a_1 .. a_n </s> </s> b_1 .. b_m </s> <pad> ..      (length n + m + 4)
 *     positions 0    1   .. n   n+1  0    1   .. m   m+1  m+2   ..      (restart at the 2nd part)
 *     langs     lang1 ....................... lang2 ..................  (padding: lang2)
 *
 * where a is the pair's lang1 side and b its lang2 side (sides are swapped when the shard
 * stores them the other way round). A pair whose row would be longer than T is skipped (as
 * XLM drops sentences over max_len); open prints how many.
 *
 * The batches are defined globally, as data/loader.h's: step s has G = global_rows / block_rows
 * blocks; its global rows g = 0 .. global_rows-1 are the pairs at positions cursor + g of the
 * epoch's order (a Fisher-Yates permutation keyed by (seed, epoch); running past the end
 * continues in the next epoch's order). Rank r serves blocks r, r + world, ..., and every rank
 * advances the same state, so a checkpoint resumes on any world size. State: a struct
 * loader_state with step (steps served), epoch[0] and cursor[0] (pairs consumed in the epoch).
 *
 * Memory: about 28 bytes per pair per rank (offsets, the usable list and the permutation); the
 * token data is read from the shards when a step needs it (pread, checksum-verified, as
 * data/shard.h's shard_stream). */
#ifndef XLMC_PAIRS_H
#define XLMC_PAIRS_H

#include "core/loader_state.h"

#include <stdint.h>

struct pairs;

struct pairs_opts {
    const char *dir;   /* shard directory written by `xlmc prep --pair` */
    const char *split; /* "train", "valid" or "test" */
    int lang1, lang2;  /* language ids: lang1's sentence comes first in a row */
    int seq_len;       /* T: positions per row */
    int block_rows;    /* rows per block (= micro_batch) */
    int global_rows;   /* rows per step over all ranks and accumulations */
    int rank, world;
    uint64_t seed;
    uint64_t vocab_hash; /* shards of another vocabulary hash are refused (0: any) */
    int vocab_size;      /* token ids >= this are an error */
    int pad_index;       /* <pad>: 2 */
    int shuffle;         /* 1: training order; 0: file order (evaluation) */
};

/* One block: rows x T, ready for batch_tlm_from_block. */
struct pairs_block {
    int rows, T;
    int32_t *ids;       /* (rows,T) */
    int32_t *positions; /* (rows,T) */
    int32_t *langs;     /* (rows,T) */
    int32_t *lengths;   /* (rows) real positions: n + m + 4 */
    uint32_t row0;      /* global row index of row 0 within the step */
};

/* NULL after printing an error naming the shard (or directory) and the cause. */
struct pairs *pairs_open(const struct pairs_opts *opts);
void pairs_close(struct pairs *p);
/* The blocks this rank serves in the next step (global_rows / block_rows / world of them) into
 * blocks[0..]: buffers owned by the loader, valid until the next call. Number of blocks, or -1
 * after printing a read error (a damaged shard, named). */
int pairs_next_step(struct pairs *p, struct pairs_block *blocks, int max_blocks);
void pairs_get_state(const struct pairs *p, struct loader_state *st);
/* 0, or -1 after printing an error (a cursor past the pairs this split has). */
int pairs_set_state(struct pairs *p, const struct loader_state *st);
/* Pairs that fit a row (the epoch's length). */
uint64_t pairs_count(const struct pairs *p);
/* Pairs the shards hold, fitting or not. */
uint64_t pairs_total(const struct pairs *p);
/* Sequential access (evaluation): usable pair i in file order as one row of T positions
 * (ids, positions, langs: (T) each; *length). 0, or -1 after printing a read error. */
int pairs_read_row(struct pairs *p, uint64_t i, int32_t *ids, int32_t *positions, int32_t *langs,
                   int32_t *length);

#endif
