/* loader.h — XLM-style streams of token windows from a directory of HDF5 shards.
 *
 * Each language's sentences (each ending in </s>) are concatenated into one stream and cut
 * into windows of T+1 tokens (positions restart at 0). The batches of a run are defined
 * globally, independent of the number of ranks: optimizer step s consists of
 * G = global_rows / block_rows blocks; block j of step s takes its language from a
 * counter-based draw on (seed, s, j) weighted by lang_ratio, and its block_rows windows from
 * that language's next windows in the epoch's shuffled order (seed, language, epoch). Rank r
 * processes blocks r, r + world, r + 2*world, ... of each step (its accumulation steps), and
 * every rank advances the cursors of all blocks, so the state below is the same on every rank
 * and a checkpoint written with one world size resumes with another.
 *
 * Memory and start-up do not grow with the corpus: open reads each shard's attributes and
 * layout only; a window is read from its shard (format version 2) when a step needs it, and
 * the epoch's order is a keyed bijection computed per position, not a stored permutation.
 * Version-1 shards (compressed) are read whole into memory, as `resident` reads every shard. */
#ifndef XLMC_LOADER_H
#define XLMC_LOADER_H

#include "core/config.h"
#include "core/loader_state.h"

#include <stdint.h>

struct loader;

struct loader_opts {
    const char *dir;   /* shard directory written by `xlmc prep` */
    const char *split; /* "train", "valid" or "test" */
    int seq_len;       /* T: windows are T+1 tokens */
    int block_rows;    /* rows per block (= micro_batch) */
    int global_rows;   /* rows per optimizer step over all ranks and accumulations */
    int rank, world;
    uint64_t seed;
    const float *lang_ratio; /* (n_langs) or NULL / all zero: proportional to window counts */
    int n_langs;
    uint64_t vocab_hash; /* shards with another vocabulary hash are refused (0: any) */
    int vocab_size;      /* token ids >= this in a shard are an error */
    int shuffle;         /* 1 for training; 0: sequential (evaluation) */
    int prefetch;        /* 1: a background thread reads ahead */
    int resident;        /* 1: read every shard whole into memory at open (the in-memory
                          * definition of the stream; tests compare the default with it) */
};

/* struct loader_state, the loader's position in checkpoints: core/loader_state.h */

/* One block: rows x (T+1) tokens, a language per row. */
struct loader_block {
    int rows, T;     /* T+1 tokens per row in tokens */
    int32_t *tokens; /* (rows, T+1) */
    int32_t *langs;  /* (rows) */
    uint32_t row0;   /* global row index of row 0 within the step */
};

/* NULL after printing an error naming the shard and the cause. */
struct loader *loader_open(const struct loader_opts *opts);
void loader_close(struct loader *l);
/* The blocks this rank processes in the next step (accum = global_rows / block_rows / world of
 * them): fills blocks[0..accum-1] (buffers owned by the loader, valid until the next call).
 * Returns the number of blocks, or -1 on a read error (printed). */
int loader_next_step(struct loader *l, struct loader_block *blocks, int max_blocks);
void loader_get_state(const struct loader *l, struct loader_state *st);
int loader_set_state(struct loader *l, const struct loader_state *st);
/* Windows in this split per language (for evaluation loops and progress). */
uint64_t loader_windows(const struct loader *l, int lang);
/* Sequential evaluation access: window i of language `lang` (T+1 tokens) into out. 0 or -1. */
int loader_read_window(struct loader *l, int lang, uint64_t i, int32_t *out);

#endif
