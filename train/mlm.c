/* mlm.c — masked-LM corruption with counter-based draws (see train/mlm.h). */
#include "train/mlm.h"
#include "core/config.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdio.h>

void mlm_opts_from_config(struct mlm_opts *o, const struct xlmc_config *cfg, int vocab_size) {
    o->word_pred = cfg->train.word_pred;
    o->p_mask = cfg->train.word_mask_keep_rand[0];
    o->p_keep = cfg->train.word_mask_keep_rand[1];
    o->p_rand = cfg->train.word_mask_keep_rand[2];
    o->mask_index = MLM_MASK_INDEX;
    o->pad_index = cfg->model.pad_index;
    o->vocab_size = vocab_size;
}

int mlm_opts_check(const struct mlm_opts *o, const char *what) {
    const float p[4] = {o->word_pred, o->p_mask, o->p_keep, o->p_rand};
    for (int i = 0; i < 4; i++)
        if (!(p[i] >= 0.0f && p[i] <= 1.0f)) {
            fprintf(stderr, "%s: word_pred and word_mask_keep_rand must lie in [0, 1]\n", what);
            return -1;
        }
    if (fabs((double)o->p_mask + o->p_keep + o->p_rand - 1.0) > 1e-4) {
        fprintf(stderr, "%s: word_mask_keep_rand must sum to 1 (got %g + %g + %g)\n", what,
                (double)o->p_mask, (double)o->p_keep, (double)o->p_rand);
        return -1;
    }
    if (o->vocab_size <= 0 || o->mask_index < 0 || o->mask_index >= o->vocab_size ||
        o->pad_index < 0 || o->pad_index >= o->vocab_size) {
        fprintf(stderr, "%s: mask word %d or pad %d outside the vocabulary of %d words\n", what,
                o->mask_index, o->pad_index, o->vocab_size);
        return -1;
    }
    return 0;
}

void mlm_mask(const struct mlm_opts *o, uint64_t seed, uint64_t step, uint32_t row0, int rows,
              int T, const int32_t *lengths, int32_t *ids, int32_t *targets) {
    // A 32-bit draw u stands for u / 2^32 in [0, 1): u < p * 2^32 has probability p exactly
    // (compared in double, where both sides are exact), so p = 0 and p = 1 are never and always.
    const double two32 = 4294967296.0;
    const double pred = (double)o->word_pred * two32;
    const double to_mask = (double)o->p_mask * two32;
    const double to_keep = ((double)o->p_mask + (double)o->p_keep) * two32;
    for (int r = 0; r < rows; r++) {
        int32_t *x = ids + (size_t)r * (size_t)T;     // (T)
        int32_t *y = targets + (size_t)r * (size_t)T; // (T)
        const int len = lengths[r] < T ? lengths[r] : T;
        for (int t = 0; t < T; t++) {
            y[t] = -1;
            // XLM also never predicts pad inputs (pred_mask[x == pad_index] = 0). It also
            // clears row position 0 ("TODO: remove" in trainer.py); we do not: every real
            // position is a candidate, as issue 18 states the objective.
            if (t >= len || x[t] == o->pad_index) continue;
            // One Philox block per position: word 0 decides whether it is predicted, word 1
            // mask / keep / random, word 2 the random word.
            struct philox4 u =
                philox4x32_10((uint32_t)t, row0 + (uint32_t)r, MLM_PHILOX_STREAM, (uint32_t)step,
                              (uint32_t)seed, (uint32_t)(seed >> 32));
            if ((double)u.v[0] >= pred) continue;
            y[t] = x[t];
            if ((double)u.v[1] < to_mask)
                x[t] = o->mask_index;
            else if ((double)u.v[1] >= to_keep && o->p_rand > 0.0f)
                // Random words range over the whole dictionary [0, vocab_size), specials
                // included, as XLM's _x_real.random_(n_words): the corruption the released
                // xlm-mlm models were trained with. (Words of the padded output layer past
                // vocab_size are never drawn.) floor(u * V / 2^32) is uniform within 2^-32*V.
                x[t] = (int32_t)(((uint64_t)u.v[2] * (uint64_t)o->vocab_size) >> 32);
        }
    }
}
