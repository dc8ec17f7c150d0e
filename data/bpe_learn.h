/* bpe_learn.h — fastBPE's learnbpe and getvocab, with fastBPE's results: the same merges in
 * the same order, ties included. fastBPE breaks ties between equally frequent pairs by token
 * id, and gives characters their ids in the iteration order of a libstdc++
 * std::unordered_map<std::string, uint32_t> of the words; word_counts reproduces that order
 * (libstdc++'s string hash, bucket growth and insertion rules). */
#ifndef XLMC_BPE_LEARN_H
#define XLMC_BPE_LEARN_H

#include <stdint.h>
#include <stdio.h>

#include "data/bpe.h"
#include "data/hashmap.h"

struct word_counts {
    struct strmap index; /* word -> node */
    /* nodes; node 0 is libstdc++'s "before begin" sentinel */
    char **word;
    uint32_t *len, *count;
    uint64_t *hash;
    int64_t *next;
    size_t n_nodes, cap;
    int64_t *bucket; /* node before the bucket's first node, or -1 */
    uint64_t n_bkt, next_resize;
};

void word_counts_init(struct word_counts *wc);
/* One more occurrence of word[0, len). */
void word_counts_add(struct word_counts *wc, const char *word, size_t len);
/* Words counted so far, fastBPE's way: bytes between ' ' and '\n'. */
void word_counts_add_text(struct word_counts *wc, const char *text, size_t len);
void word_counts_free(struct word_counts *wc);

/* Learn up to n_merges merges into *out (empty on entry), writing "a b count" lines to codes
 * (if not NULL). Returns the number learned: fewer when no pair is left. */
size_t bpe_learn(const struct word_counts *wc, size_t n_merges, struct bpe *out, FILE *codes);

/* fastBPE getvocab of the corpus after applying *codes: "piece count" lines, most frequent
 * first, ties by byte order. Returns 0 or -1 on a write error. */
int bpe_write_vocab(const struct word_counts *wc, const struct bpe *codes, FILE *vocab);

#endif
