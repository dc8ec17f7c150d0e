/* objective.c — the run's objectives and their data streams (see objective.h). */
#include "train/objective.h"
#include "core/util.h"
#include "data/pairs.h"
#include "train/mlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(enum objective_kind k) {
    return k == OBJ_CLM ? "clm" : k == OBJ_MLM ? "mlm" : "tlm";
}

void objective_name(const struct objective *o, const struct model_config *m, char *out,
                    size_t len) {
    if (o->lang < 0)
        snprintf(out, len, "%s", kind_name(o->kind));
    else if (o->kind == OBJ_TLM)
        snprintf(out, len, "tlm:%s-%s", m->langs[o->lang], m->langs[o->lang2]);
    else
        snprintf(out, len, "%s:%s", kind_name(o->kind), m->langs[o->lang]);
}

int objective_of_batch(const struct train_config *tc, long b) {
    return tc->n_objectives > 1 ? (int)(b % tc->n_objectives) : 0;
}

void objective_mask(const struct xlmc_config *cfg, uint64_t key_step, uint32_t row0, int rows,
                    int T, const int32_t *lengths, int32_t *ids, int32_t *targets) {
    struct mlm_opts o;
    mlm_opts_from_config(&o, cfg, cfg->model.vocab_size);
    mlm_mask(&o, cfg->train.seed, key_step, row0, rows, T, lengths, ids, targets);
}

/* The data-order seed of a stream: the run's for CLM (a plain clm run reads what it always
 * did), another per kind, so that clm:de and mlm:de do not walk the same windows in step. */
static uint64_t stream_seed(uint64_t seed, enum objective_kind kind) {
    return seed + (uint64_t)kind * 0x9E3779B97F4A7C15ull;
}

/* The train split's windows per language, for the checks below (no shuffle, no thread). */
static int probe_windows(const struct loader_opts *base, uint64_t *n, int n_langs) {
    struct loader_opts o = *base;
    o.lang_ratio = NULL;
    o.shuffle = 0;
    o.prefetch = 0;
    o.rank = 0;
    o.world = 1;
    o.block_rows = o.global_rows = 1;
    struct loader *l = loader_open(&o);
    if (!l) return -1;
    for (int k = 0; k < n_langs; k++)
        n[k] = loader_windows(l, k);
    loader_close(l);
    return 0;
}

int objectives_open(struct objective_set *set, const struct xlmc_config *cfg,
                    const struct loader_opts *base) {
    const struct train_config *tc = &cfg->train;
    const struct model_config *mc = &cfg->model;
    memset(set, 0, sizeof *set);
    uint64_t nwin[XLMC_MAX_LANGS] = {0};
    for (int k = 0; k < tc->n_objectives; k++) {
        if (tc->objectives[k].kind == OBJ_CLM) continue;
        struct mlm_opts mo;
        mlm_opts_from_config(&mo, cfg, mc->vocab_size);
        if (mlm_opts_check(&mo, cfg->path)) return -1;
        break;
    }
    int any_windows = 0;
    for (int k = 0; k < tc->n_objectives; k++)
        any_windows |= tc->objectives[k].kind != OBJ_TLM;
    if (any_windows && probe_windows(base, nwin, mc->n_langs)) return -1;
    for (int k = 0; k < tc->n_objectives; k++) {
        struct objective_stream *s = &set->s[k];
        s->obj = tc->objectives[k];
        objective_name(&s->obj, mc, s->name, sizeof s->name);
        set->n = k + 1;
        if (s->obj.kind == OBJ_TLM) {
            struct pairs_opts po = {
                .dir = base->dir,
                .split = base->split,
                .lang1 = s->obj.lang,
                .lang2 = s->obj.lang2,
                .seq_len = tc->seq_len,
                .block_rows = base->block_rows,
                .global_rows = base->global_rows,
                .rank = base->rank,
                .world = base->world,
                .seed = stream_seed(base->seed, OBJ_TLM),
                .vocab_hash = base->vocab_hash,
                .vocab_size = base->vocab_size,
                .pad_index = mc->pad_index,
                .shuffle = base->shuffle,
            };
            if (!(s->pairs = pairs_open(&po))) {
                xlmc_error("%s: [train] objectives: %s needs %s-%s pair shards in %s (xlmc "
                           "prep --pair %s-%s --input A.%s B.%s --out %s)",
                           cfg->path, s->name, mc->langs[s->obj.lang], mc->langs[s->obj.lang2],
                           base->dir, mc->langs[s->obj.lang], mc->langs[s->obj.lang2],
                           mc->langs[s->obj.lang], mc->langs[s->obj.lang2], base->dir);
                objectives_close(set);
                return -1;
            }
            continue;
        }
        if (s->obj.lang >= 0 && !nwin[s->obj.lang]) {
            xlmc_error("%s: [train] objectives: %s needs %s text, but %s has no train window of "
                       "%d tokens in %s (prepare it with xlmc prep --lang %s, or drop %s)",
                       cfg->path, s->name, mc->langs[s->obj.lang], base->dir, tc->seq_len + 1,
                       mc->langs[s->obj.lang], mc->langs[s->obj.lang], s->name);
            objectives_close(set);
            return -1;
        }
        /* one language: a one-hot ratio; all languages: the run's lang_ratio (base) */
        float onehot[XLMC_MAX_LANGS] = {0};
        struct loader_opts o = *base;
        o.seed = stream_seed(base->seed, s->obj.kind);
        if (s->obj.lang >= 0) {
            onehot[s->obj.lang] = 1;
            o.lang_ratio = onehot;
        }
        if (!(s->windows = loader_open(&o))) {
            objectives_close(set);
            return -1;
        }
    }
    return 0;
}

void objectives_close(struct objective_set *set) {
    for (int k = 0; k < set->n; k++) {
        if (set->s[k].windows) loader_close(set->s[k].windows);
        if (set->s[k].pairs) pairs_close(set->s[k].pairs);
        if (set->s[k].valid_pairs) pairs_close(set->s[k].valid_pairs);
    }
    memset(set, 0, sizeof *set);
}

void objectives_get_state(const struct objective_set *set, struct loader_state *st) {
    for (int k = 0; k < set->n; k++) {
        memset(&st[k], 0, sizeof st[k]);
        if (set->s[k].windows) loader_get_state(set->s[k].windows, &st[k]);
        if (set->s[k].pairs) pairs_get_state(set->s[k].pairs, &st[k]);
    }
}

int objectives_set_state(struct objective_set *set, const struct loader_state *st) {
    for (int k = 0; k < set->n; k++)
        if (set->s[k].windows && loader_set_state(set->s[k].windows, &st[k]))
            return -1;
        else if (set->s[k].pairs && pairs_set_state(set->s[k].pairs, &st[k]))
            return -1;
    return 0;
}

int objectives_next_step(struct objective_set *set, int k, const struct xlmc_config *cfg,
                         uint64_t b, struct batch_buf *bufs, struct batch *batches, int max) {
    struct objective_stream *s = &set->s[k];
    if (s->pairs) { /* TLM: the pair rows, masked as MLM */
        struct pairs_block *pb = xcalloc((size_t)max, sizeof *pb);
        struct mlm_opts mo;
        mlm_opts_from_config(&mo, cfg, cfg->model.vocab_size);
        int n = pairs_next_step(s->pairs, pb, max);
        for (int i = 0; i < n; i++)
            batch_tlm_from_block(&bufs[i], &batches[i], &pb[i], &mo, cfg->train.seed, b);
        free(pb);
        return n;
    }
    struct loader_block *blocks = xcalloc((size_t)max, sizeof *blocks);
    int n = loader_next_step(s->windows, blocks, max);
    for (int i = 0; i < n; i++) {
        const struct loader_block *bl = &blocks[i];
        batch_from_windows(&bufs[i], &batches[i], bl->tokens, bl->langs, bl->rows, bl->T, bl->row0);
        if (s->obj.kind != OBJ_MLM) continue;
        /* MLM: the inputs are the window's first T tokens (as CLM), masked; the targets are
         * the originals at the predicted positions only */
        objective_mask(cfg, b, bl->row0, bl->rows, bl->T, bufs[i].lengths, bufs[i].ids,
                       bufs[i].targets);
        batches[i].bidirectional = 1;
    }
    free(blocks);
    return n;
}
