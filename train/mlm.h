/* mlm.h — the masked-LM input corruption of Lample & Conneau (2019), as XLM's
 * Trainer.mask_out (xlm/trainer.py) does it, with counter-based draws.
 *
 * Each real position (t < lengths[r]) of a row is predicted with probability word_pred; a
 * predicted position's input becomes the mask word (p_mask), stays as it is (p_keep) or becomes
 * a random word (p_rand), and its target is the original id; every other target is -1 (ignored
 * by the loss). Every draw comes from Philox keyed by (seed, step, global row, position) with a
 * stream constant of its own (MLM_PHILOX_STREAM), so a row's mask depends only on the step and
 * on its global row index: not on the number of ranks, the micro-batch split or the backend.
 *
 * Where we differ from mask_out: XLM never predicts row position 0 (`pred_mask[0] = 0`, marked
 * "TODO: remove" there); here every real position may be predicted, as issue 18 states the
 * objective. XLM's fp16 path rounds the number of predicted words to a multiple of 8 for speed;
 * here the count is what the draws give, in fp32 and fp16 alike (so the two precisions train on
 * the same masks). */
#ifndef XLMC_MLM_H
#define XLMC_MLM_H

#include <stdint.h>

/* XLM's <special1>, the mask word of MLM and TLM, in our dictionary. */
#define MLM_MASK_INDEX 5

/* Philox counter word c2 of the masking draws; dropout uses small tensor ids there (ops.h
 * DROPOUT_TENSOR_*), so the two streams never share a counter. ("MLM1" in ASCII.) */
#define MLM_PHILOX_STREAM 0x4D4C4D31u

struct mlm_opts {
    float word_pred;              /* fraction of real positions predicted (XLM: 0.15) */
    float p_mask, p_keep, p_rand; /* of those: mask word / unchanged / random word (0.8,0.1,0.1) */
    int mask_index;               /* XLM's <special1>: 5 */
    int pad_index;                /* <pad>: 2; pad inputs are never predicted */
    int vocab_size;               /* random words are drawn from [0, vocab_size) */
};

/* Fill o from the config's word_pred and word_mask_keep_rand and the model's pad_index, with
 * mask word 5 (XLM's <special1>) and vocab_size the dictionary's words (V before any padding
 * of the output layer: the config's vocab_size may be 0 until the data directory is read). */
struct xlmc_config;
void mlm_opts_from_config(struct mlm_opts *o, const struct xlmc_config *cfg, int vocab_size);

/* Check o: probabilities in [0, 1], p_mask + p_keep + p_rand = 1 (within 1e-4), indices inside
 * the vocabulary. 0, or -1 after printing an error naming `what`. */
int mlm_opts_check(const struct mlm_opts *o, const char *what);

/* Mask `rows` rows of T positions in place. Row r is global row row0 + r of the step.
 * ids (rows,T): in, the inputs; out, the masked inputs.
 * targets (rows,T): out, the original id at predicted positions, -1 elsewhere.
 * lengths (rows): real positions per row; positions at or past it are padding. */
void mlm_mask(const struct mlm_opts *o, uint64_t seed, uint64_t step, uint32_t row0, int rows,
              int T, const int32_t *lengths, int32_t *ids, int32_t *targets);

#endif
