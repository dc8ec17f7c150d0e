/* evaluate.h — loss, perplexity and next-token accuracy of a model on a split, per language.
 * Deterministic: windows 0, 1, 2, ... of each language in stream order (no shuffle), window
 * i evaluated by rank i % world, sums combined over ranks. */
#ifndef XLMC_EVALUATE_H
#define XLMC_EVALUATE_H

#include "core/comm.h"
#include "core/model.h"
#include "data/loader.h"
#include "data/pairs.h"

struct eval_lang {
    double loss_sum; /* summed token loss (nats) */
    double tokens;   /* predicted tokens */
    double correct;  /* argmax == target */
    long windows;
};

struct eval_result {
    struct eval_lang lang[XLMC_MAX_LANGS];
    struct eval_lang all;
};

/* l: a loader opened on the split with shuffle 0 (any rank/world in its opts). Windows per
 * language capped at max_windows (0: all), B rows per forward pass. 0 or -1. */
int evaluate(struct model *m, struct loader *l, struct comm *c, long max_windows, int B,
             struct eval_result *out);

/* The same for one objective of the model's config (train/objective.h): CLM scores the next
 * token at every position, of one language or all; MLM masks each window as training does,
 * keyed by a fixed evaluation step and the window's index (the same positions at every
 * evaluation and on any number of ranks) and scores the predicted positions. TLM is refused
 * (its pairs are not windows). */
int evaluate_objective(struct model *m, struct loader *l, struct comm *c,
                       const struct objective *obj, long max_windows, int B,
                       struct eval_result *out);

/* TLM: the pairs of p (opened by evaluate_open_pairs) as rows, each masked as training masks
 * them with the fixed evaluation key and the pair's index; every predicted position counts
 * for the language of its sentence. At most max_pairs (0: all); out->all.windows = pairs. */
int evaluate_pairs(struct model *m, struct pairs *p, const struct objective *obj, struct comm *c,
                   long max_pairs, int B, struct eval_result *out);
struct pairs *evaluate_open_pairs(const struct model *m, const char *dir, const char *split,
                                  const struct objective *obj, uint64_t vocab_hash, int B);

/* Open a loader for evaluation of `split` of dir with the model's T and vocabulary. */
struct loader *evaluate_open(const struct model *m, const char *dir, const char *split,
                             uint64_t vocab_hash, int B);

#endif
