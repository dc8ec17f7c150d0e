/* bpe.h — fastBPE codes: symbols, merges by rank, and applying them to one word. A word is
 * split into UTF-8 characters, "</w>" appended to the last; the adjacent pair with the lowest
 * merge rank is merged everywhere (left to right) until no pair has a rank. */
#ifndef XLMC_BPE_H
#define XLMC_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "data/hashmap.h"

struct bpe {
    char **sym; /* symbol strings ("e", "n</w>", "en</w>"), owned */
    size_t n_sym, cap_sym;
    struct strmap sym_id; /* string -> symbol id */
    struct u64map merge;  /* (left << 32 | right) -> (rank << 32 | merged symbol) */
    uint32_t (*pairs)[2]; /* merges in rank order */
    size_t n_merges, cap_merges;
};

/* Intern a symbol; returns its id. */
int32_t bpe_symbol(struct bpe *b, const char *s, size_t len);
/* Append merge (a, b) with the next rank. -1 if the pair is already a merge. */
int bpe_add_merge(struct bpe *b, const char *a, const char *bb);
void bpe_free(struct bpe *b);

/* One piece of a BPE-split word: bytes [start, end) of the word, its symbol id (-1 for a
 * character that no merge knows) and whether it is the word's last piece ("</w>"). */
struct bpe_piece {
    int32_t sym;
    uint32_t start, end;
    uint32_t rank;  /* bpe_apply's scratch: rank of the merge with the next piece */
    uint32_t fresh; /* bpe_apply's scratch: made by the last merge pass */
};

/* Split word[0, len) into pieces; returns their number (<= number of characters) written to
 * *pieces (grown with xrealloc, *cap its capacity). */
size_t bpe_apply(const struct bpe *b, const char *word, size_t len, struct bpe_piece **pieces,
                 size_t *cap);

#endif
