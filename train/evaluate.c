/* evaluate.c — per-language loss, perplexity and accuracy (see evaluate.h). */
#include "train/evaluate.h"
#include "core/util.h"
#include "train/session.h"

#include <stdlib.h>
#include <string.h>

struct loader *evaluate_open(const struct model *m, const char *dir, const char *split,
                             uint64_t vocab_hash, int B) {
    struct loader_opts o = {
        .dir = dir,
        .split = split,
        .seq_len = m->cfg.train.seq_len,
        .block_rows = B,
        .global_rows = B,
        .rank = 0,
        .world = 1,
        .seed = m->cfg.train.seed,
        .lang_ratio = NULL,
        .n_langs = m->cfg.model.n_langs,
        .vocab_hash = vocab_hash,
        .vocab_size = m->cfg.model.vocab_size,
        .shuffle = 0,
        .prefetch = 0,
    };
    return loader_open(&o);
}

int evaluate(struct model *m, struct loader *l, struct comm *c, long max_windows, int B,
             struct eval_result *out) {
    memset(out, 0, sizeof *out);
    int T = m->cfg.train.seq_len, NL = m->cfg.model.n_langs;
    int32_t *win = xmalloc((size_t)B * (size_t)(T + 1) * sizeof(int32_t));
    int32_t *langs = xmalloc((size_t)B * sizeof(int32_t));
    struct batch_buf buf = {0};
    int rc = 0;
    for (int lang = 0; lang < NL && !rc; lang++) {
        long n = (long)loader_windows(l, lang);
        if (max_windows > 0 && n > max_windows) n = max_windows;
        out->lang[lang].windows = n;
        int rows = 0;
        for (long i = c->rank; i < n + c->world && !rc; i += c->world) {
            int last = i >= n; /* one pass past the end flushes the partial batch */
            if (!last) {
                if (loader_read_window(l, lang, (uint64_t)i, win + (size_t)rows * (size_t)(T + 1)))
                    rc = -1;
                else
                    langs[rows++] = lang;
            }
            if (rows && (rows == B || last)) {
                struct batch b;
                long count = 0, correct = 0;
                double loss_sum = 0.0;
                batch_from_windows(&buf, &b, win, langs, rows, T, 0);
                /* loss and argmax reduced on the device: no (B,T,V) logits to the host */
                if (model_evaluate(m, &b, &loss_sum, &count, &correct)) {
                    rc = -1;
                    break;
                }
                out->lang[lang].loss_sum += loss_sum;
                out->lang[lang].tokens += (double)count;
                out->lang[lang].correct += (double)correct;
                rows = 0;
            }
            if (last) break;
        }
    }
    double sums[3 * XLMC_MAX_LANGS];
    for (int k = 0; k < XLMC_MAX_LANGS; k++) {
        sums[3 * k] = out->lang[k].loss_sum;
        sums[3 * k + 1] = out->lang[k].tokens;
        sums[3 * k + 2] = out->lang[k].correct;
    }
    if (!rc && c->allreduce_sum_f64(c, sums, 3 * XLMC_MAX_LANGS)) rc = -1;
    for (int k = 0; k < XLMC_MAX_LANGS; k++) {
        out->lang[k].loss_sum = sums[3 * k];
        out->lang[k].tokens = sums[3 * k + 1];
        out->lang[k].correct = sums[3 * k + 2];
        out->all.loss_sum += sums[3 * k];
        out->all.tokens += sums[3 * k + 1];
        out->all.correct += sums[3 * k + 2];
        out->all.windows += out->lang[k].windows;
    }
    batch_buf_free(&buf);
    free(win);
    free(langs);
    return rc;
}
