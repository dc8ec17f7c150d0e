/* evaluate.c — per-language loss, perplexity and accuracy (see evaluate.h). */
#include "train/evaluate.h"
#include "core/util.h"
#include "train/objective.h"
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
    struct objective clm = {.kind = OBJ_CLM, .lang = -1, .lang2 = -1};
    return evaluate_objective(m, l, c, &clm, max_windows, B, out);
}

static int reduce_result(struct comm *c, struct eval_result *out);

/* Add one batch's summed loss, predicted tokens and correct argmaxes to e; 0 or -1. Loss and
 * argmax are reduced on the device: no (B,T,V) logits come to the host. */
static int evaluate_add(struct model *m, const struct batch *b, struct eval_lang *e) {
    long count = 0, correct = 0;
    double loss_sum = 0.0;
    if (model_evaluate(m, b, &loss_sum, &count, &correct)) return -1;
    e->loss_sum += loss_sum;
    e->tokens += (double)count;
    e->correct += (double)correct;
    return 0;
}

/* The MLM mask key of evaluation: a step no training run reaches, so evaluation masks never
 * repeat a training batch's; row = the window's index in its language. */
#define EVAL_MASK_STEP UINT64_MAX

int evaluate_objective(struct model *m, struct loader *l, struct comm *c,
                       const struct objective *obj, long max_windows, int B,
                       struct eval_result *out) {
    memset(out, 0, sizeof *out);
    if (obj->kind == OBJ_TLM)
        return xlmc_error("evaluate: tlm objectives need the pair loader (not windows)");
    int mlm = obj->kind == OBJ_MLM;
    int T = m->cfg.train.seq_len, NL = m->cfg.model.n_langs;
    int32_t *win = xmalloc((size_t)B * (size_t)(T + 1) * sizeof(int32_t));
    int32_t *langs = xmalloc((size_t)B * sizeof(int32_t));
    uint32_t *index = xmalloc((size_t)B * sizeof(uint32_t));
    struct batch_buf buf = {0};
    int rc = 0;
    for (int lang = 0; lang < NL && !rc; lang++) {
        if (obj->lang >= 0 && lang != obj->lang) continue;
        long n = (long)loader_windows(l, lang);
        if (max_windows > 0 && n > max_windows) n = max_windows;
        out->lang[lang].windows = n;
        int rows = 0;
        for (long i = c->rank; i < n + c->world && !rc; i += c->world) {
            int last = i >= n; /* one pass past the end flushes the partial batch */
            if (!last) {
                if (loader_read_window(l, lang, (uint64_t)i, win + (size_t)rows * (size_t)(T + 1)))
                    rc = -1;
                else {
                    index[rows] = (uint32_t)i;
                    langs[rows++] = lang;
                }
            }
            if (rows && (rows == B || last)) {
                struct batch b;
                batch_from_windows(&buf, &b, win, langs, rows, T, 0);
                for (int r = 0; mlm && r < rows; r++) /* masked one row at a time: its index */
                    objective_mask(&m->cfg, EVAL_MASK_STEP, index[r], 1, T, buf.lengths + r,
                                   buf.ids + (size_t)r * (size_t)T,
                                   buf.targets + (size_t)r * (size_t)T);
                b.bidirectional = mlm;
                if (evaluate_add(m, &b, &out->lang[lang])) {
                    rc = -1;
                    break;
                }
                rows = 0;
            }
            if (last) break;
        }
    }
    if (reduce_result(c, out)) rc = -1;
    batch_buf_free(&buf);
    free(win);
    free(langs);
    free(index);
    return rc;
}

/* Sum the per-language sums over ranks and total them in out->all. 0 or -1. */
static int reduce_result(struct comm *c, struct eval_result *out) {
    double sums[3 * XLMC_MAX_LANGS];
    int rc = 0;
    for (int k = 0; k < XLMC_MAX_LANGS; k++) {
        sums[3 * k] = out->lang[k].loss_sum;
        sums[3 * k + 1] = out->lang[k].tokens;
        sums[3 * k + 2] = out->lang[k].correct;
    }
    if (c->allreduce_sum_f64(c, sums, 3 * XLMC_MAX_LANGS)) rc = -1;
    for (int k = 0; k < XLMC_MAX_LANGS; k++) {
        out->lang[k].loss_sum = sums[3 * k];
        out->lang[k].tokens = sums[3 * k + 1];
        out->lang[k].correct = sums[3 * k + 2];
        out->all.loss_sum += sums[3 * k];
        out->all.tokens += sums[3 * k + 1];
        out->all.correct += sums[3 * k + 2];
        out->all.windows += out->lang[k].windows;
    }
    return rc;
}

int evaluate_pairs(struct model *m, struct pairs *p, const struct objective *obj, struct comm *c,
                   long max_pairs, int B, struct eval_result *out) {
    memset(out, 0, sizeof *out);
    int obj_lang1 = obj->lang, obj_lang2 = obj->lang2;
    int T = m->cfg.train.seq_len;
    size_t BT = (size_t)B * (size_t)T;
    int32_t *ids = xmalloc(BT * sizeof(int32_t)), *pos = xmalloc(BT * sizeof(int32_t));
    int32_t *langs = xmalloc(BT * sizeof(int32_t)), *targets = xmalloc(BT * sizeof(int32_t));
    int32_t *part = xmalloc(BT * sizeof(int32_t)); /* targets of one language's sentences */
    int32_t *lengths = xmalloc((size_t)B * sizeof(int32_t));
    long n = (long)pairs_count(p);
    if (max_pairs > 0 && n > max_pairs) n = max_pairs;
    int rows = 0, rc = 0;
    for (long i = c->rank; i < n + c->world && !rc; i += c->world) {
        int last = i >= n; /* one pass past the end flushes the partial batch */
        if (!last) {
            size_t o = (size_t)rows * (size_t)T;
            if (pairs_read_row(p, (uint64_t)i, ids + o, pos + o, langs + o, &lengths[rows])) {
                rc = -1;
                break;
            }
            /* masked as training masks TLM rows, keyed by the pair's index */
            objective_mask(&m->cfg, EVAL_MASK_STEP, (uint32_t)i, 1, T, &lengths[rows], ids + o,
                           targets + o);
            rows++;
        }
        if (rows && (rows == B || last)) {
            struct batch b = {.B = rows,
                              .T = T,
                              .ids = ids,
                              .langs = langs,
                              .lengths = lengths,
                              .targets = part,
                              .positions = pos,
                              .bidirectional = 1};
            /* a predicted position counts for the language of its sentence: one device pass
             * per language, the other part's targets ignored (the inputs are the same) */
            for (int side = 0; side < 2 && !rc; side++) {
                int lang = side ? obj_lang2 : obj_lang1;
                long any = 0;
                for (size_t j = 0; j < (size_t)rows * (size_t)T; j++) {
                    part[j] = langs[j] == lang ? targets[j] : -1;
                    any += part[j] >= 0;
                }
                if (!any) continue;
                if (evaluate_add(m, &b, &out->lang[lang])) {
                    rc = -1;
                    break;
                }
            }
            rows = 0;
        }
        if (last) break;
    }
    if (reduce_result(c, out)) rc = -1;
    out->all.windows = n;
    free(ids);
    free(pos);
    free(langs);
    free(targets);
    free(part);
    free(lengths);
    return rc;
}

struct pairs *evaluate_open_pairs(const struct model *m, const char *dir, const char *split,
                                  const struct objective *obj, uint64_t vocab_hash, int B) {
    struct pairs_opts o = {
        .dir = dir,
        .split = split,
        .lang1 = obj->lang,
        .lang2 = obj->lang2,
        .seq_len = m->cfg.train.seq_len,
        .block_rows = B,
        .global_rows = B,
        .rank = 0,
        .world = 1,
        .seed = m->cfg.train.seed,
        .vocab_hash = vocab_hash,
        .vocab_size = m->cfg.model.vocab_size,
        .pad_index = m->cfg.model.pad_index,
        .shuffle = 0,
    };
    return pairs_open(&o);
}
