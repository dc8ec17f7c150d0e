/* loader.c — global, rank-independent batches of token windows from HDF5 shards (semantics in
 * loader.h, file format in data/README.md).
 *
 * Every language's shards are read whole at open and concatenated into one stream of
 * sentences, each followed by </s>; window i of a language is stream[i*(T+1) .. (i+1)*(T+1)),
 * the tail shorter than T+1 is not used. An epoch of a language visits its windows in a
 * permutation drawn from (seed, language, epoch) with Philox, so a state of three counters per
 * language (epoch, cursor) plus the step counter recreates the position exactly. */
#include "data/loader.h"
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/philox.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct lang_stream {
    int32_t *tok; /* (n_tok) sentences with </s> */
    uint64_t n_tok, n_win;
    uint64_t *perm; /* (n_win) window order of epoch perm_epoch; NULL before use */
    uint64_t perm_epoch;
};

struct step_buf {
    int32_t *tokens; /* (accum, block_rows, T+1) */
    int32_t *langs;  /* (accum, block_rows) */
    struct loader_state after;
    int rc;
};

struct loader {
    struct loader_opts o;
    int W;        /* T+1 tokens per window */
    int G, accum; /* blocks per step over all ranks; blocks of this rank */
    double weight[XLMC_MAX_LANGS], weight_sum;
    struct lang_stream s[XLMC_MAX_LANGS];
    struct loader_state served; /* after the steps handed to the caller */
    struct loader_state fill;   /* what the next fill starts from (the filler's own) */
    struct step_buf buf[2];
    int front;
    /* prefetch thread */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, want, busy, ready, quit;
};

/* ---- deterministic draws ---- */

static double unit_draw(uint64_t seed, uint32_t domain, uint64_t a, uint64_t b) {
    struct philox4 r = philox4x32_10((uint32_t)a, (uint32_t)(a >> 32), (uint32_t)b, domain,
                                     (uint32_t)seed, (uint32_t)(seed >> 32));
    return (double)(((uint64_t)r.v[0] << 21) ^ (r.v[1] >> 11)) / 9007199254740992.0;
}

/* Language of block j of step `step`. */
static int draw_lang(const struct loader *l, uint64_t step, int j) {
    double u = unit_draw(l->o.seed, 0x4c414e47u /* LANG */, step, (uint64_t)j) * l->weight_sum;
    int last = 0;
    for (int k = 0; k < l->o.n_langs; k++) {
        if (l->weight[k] <= 0) continue;
        last = k;
        if (u < l->weight[k]) return k;
        u -= l->weight[k];
    }
    return last;
}

/* Window order of language k in `epoch`: Fisher-Yates with Philox draws. */
static void make_perm(struct loader *l, int k, uint64_t epoch) {
    struct lang_stream *s = &l->s[k];
    if (!s->perm) s->perm = xmalloc((size_t)(s->n_win ? s->n_win : 1) * sizeof *s->perm);
    for (uint64_t i = 0; i < s->n_win; i++)
        s->perm[i] = i;
    uint64_t key = l->o.seed ^ ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull);
    for (uint64_t i = s->n_win; i > 1; i--) {
        struct philox4 r = philox4x32_10((uint32_t)i, (uint32_t)(i >> 32), (uint32_t)epoch,
                                         (uint32_t)(epoch >> 32) ^ 0x5045524du /* PERM */,
                                         (uint32_t)key, (uint32_t)(key >> 32));
        uint64_t j = (((uint64_t)r.v[0] << 32) | r.v[1]) % i;
        uint64_t t = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j];
        s->perm[j] = t;
    }
    s->perm_epoch = epoch;
}

static uint64_t window_of(struct loader *l, int k, uint64_t epoch, uint64_t cursor) {
    if (!l->o.shuffle) return cursor;
    if (!l->s[k].perm || l->s[k].perm_epoch != epoch) make_perm(l, k, epoch);
    return l->s[k].perm[cursor];
}

/* One step from state *st into b (this rank's blocks); advances *st over all blocks. */
static int fill_step(struct loader *l, struct step_buf *b, struct loader_state *st) {
    if (l->weight_sum <= 0)
        return b->rc = xlmc_error("%s: the %s split has no window of %d tokens in any language "
                                  "with a sampling weight (more text, or a shorter seq_len)",
                                  l->o.dir, l->o.split, l->W);
    int rows = l->o.block_rows;
    for (int j = 0; j < l->G; j++) {
        int k = draw_lang(l, st->step, j);
        int mine = j % l->o.world == l->o.rank;
        size_t blk = (size_t)(j / l->o.world);
        for (int r = 0; r < rows; r++) {
            if (st->cursor[k] >= l->s[k].n_win) {
                st->epoch[k]++;
                st->cursor[k] = 0;
            }
            uint64_t w = window_of(l, k, st->epoch[k], st->cursor[k]++);
            if (!mine) continue;
            size_t row = blk * (size_t)rows + (size_t)r;
            memcpy(b->tokens + row * (size_t)l->W, l->s[k].tok + w * (uint64_t)l->W,
                   (size_t)l->W * sizeof(int32_t));
            b->langs[row] = k;
        }
    }
    st->step++;
    b->after = *st;
    return b->rc = 0;
}

static void *prefetch_main(void *arg) {
    struct loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !l->want)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        l->want = 0;
        l->busy = 1;
        pthread_mutex_unlock(&l->mu);
        fill_step(l, &l->buf[1 - l->front], &l->fill);
        pthread_mutex_lock(&l->mu);
        l->busy = 0;
        l->ready = 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- open ---- */

static int check_opts(const struct loader_opts *o) {
    const char *bad = !o->dir || !o->split                      ? "no directory or split"
                      : o->seq_len < 1                          ? "seq_len < 1"
                      : o->block_rows < 1 || o->global_rows < 1 ? "block_rows/global_rows < 1"
                      : o->global_rows % o->block_rows
                          ? "global_rows is not a multiple of block_rows"
                      : o->world < 1 || o->rank < 0 || o->rank >= o->world ? "rank outside world"
                      : (o->global_rows / o->block_rows) % o->world
                          ? "blocks per step are not a multiple of the ranks"
                      : o->n_langs < 1 || o->n_langs > XLMC_MAX_LANGS ? "n_langs out of range"
                                                                      : NULL;
    if (!bad) return 0;
    return xlmc_error("loader for %s: %s (seq_len %d, block_rows %d, global_rows %d, rank %d of "
                      "%d, n_langs %d)",
                      o->dir ? o->dir : "(null)", bad, o->seq_len, o->block_rows, o->global_rows,
                      o->rank, o->world, o->n_langs);
}

/* Append shard sh's sentences, each followed by </s>, to its language's stream. */
static void stream_append(struct lang_stream *s, const struct shard *sh, uint64_t *cap) {
    uint64_t need = s->n_tok + (uint64_t)sh->meta.n_tokens + (uint64_t)sh->meta.n_sentences;
    if (need > *cap) {
        *cap = need > 2 * *cap ? need : 2 * *cap;
        s->tok = xrealloc(s->tok, (size_t)*cap * sizeof *s->tok);
    }
    for (int64_t i = 0; i < sh->meta.n_sentences; i++) {
        int64_t a = sh->offsets[i], n = sh->offsets[i + 1] - a;
        memcpy(s->tok + s->n_tok, sh->tokens + a, (size_t)n * sizeof *s->tok);
        s->n_tok += (uint64_t)n;
        s->tok[s->n_tok++] = TOK_EOS;
    }
}

static int load_shards(struct loader *l) {
    const struct loader_opts *o = &l->o;
    char **paths;
    int n;
    if (shard_list(o->dir, o->split, &paths, &n)) return -1;
    if (!n)
        return xlmc_error("%s: no %s shards (%s-*.h5): prepare the directory with `xlmc prep`",
                          o->dir, o->split, o->split);
    uint64_t cap[XLMC_MAX_LANGS] = {0}, hash = o->vocab_hash;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        struct shard sh;
        if ((rc = shard_read(paths[i], hash, 1, &sh))) break;
        if (!hash) hash = sh.meta.vocab_hash; /* the first shard fixes it for the rest */
        if (sh.meta.lang_id >= o->n_langs)
            rc = xlmc_error("%s: language %s has id %d, but the model has %d language(s)", paths[i],
                            sh.meta.lang, sh.meta.lang_id, o->n_langs);
        else if (strcmp(sh.meta.split, o->split))
            rc = xlmc_error("%s: the shard says split '%s', its name says '%s'", paths[i],
                            sh.meta.split, o->split);
        for (int64_t t = 0; !rc && o->vocab_size > 0 && t < sh.meta.n_tokens; t++)
            if (sh.tokens[t] >= o->vocab_size)
                rc = xlmc_error("%s: token %lld has id %d >= the model's vocab_size %d", paths[i],
                                (long long)t, sh.tokens[t], o->vocab_size);
        if (!rc) stream_append(&l->s[sh.meta.lang_id], &sh, &cap[sh.meta.lang_id]);
        shard_free(&sh);
    }
    shard_list_free(paths, n);
    return rc;
}

static int set_weights(struct loader *l) {
    int any = 0;
    for (int k = 0; l->o.lang_ratio && k < l->o.n_langs; k++)
        any |= l->o.lang_ratio[k] > 0;
    l->weight_sum = 0;
    for (int k = 0; k < l->o.n_langs; k++) {
        double w = any ? l->o.lang_ratio[k] : (double)l->s[k].n_win;
        if (any && w > 0 && !l->s[k].n_win)
            return xlmc_error("%s: lang_ratio gives %s weight %g but its %s split has no window "
                              "of %d tokens",
                              l->o.dir, shard_lang_code(k), w, l->o.split, l->W);
        l->weight[k] = w > 0 ? w : 0;
        l->weight_sum += l->weight[k];
    }
    return 0;
}

struct loader *loader_open(const struct loader_opts *opts) {
    if (check_opts(opts)) return NULL;
    struct loader *l = xcalloc(1, sizeof *l);
    l->o = *opts;
    l->W = opts->seq_len + 1;
    l->G = opts->global_rows / opts->block_rows;
    l->accum = l->G / opts->world;
    if (load_shards(l)) {
        loader_close(l);
        return NULL;
    }
    for (int k = 0; k < opts->n_langs; k++)
        l->s[k].n_win = l->s[k].n_tok / (uint64_t)l->W;
    if (set_weights(l)) {
        loader_close(l);
        return NULL;
    }
    size_t rows = (size_t)l->accum * (size_t)opts->block_rows;
    for (int i = 0; i < 2; i++) {
        l->buf[i].tokens = xmalloc(rows * (size_t)l->W * sizeof(int32_t));
        l->buf[i].langs = xmalloc(rows * sizeof(int32_t));
    }
    if (opts->prefetch) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        l->want = 1;
        if (pthread_create(&l->thread, NULL, prefetch_main, l)) {
            xlmc_warn("loader: cannot start the prefetch thread; reading in the foreground");
            pthread_cond_destroy(&l->cv);
            pthread_mutex_destroy(&l->mu);
            l->o.prefetch = 0;
        } else {
            l->running = 1;
        }
    }
    return l;
}

void loader_close(struct loader *l) {
    if (!l) return;
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    for (int k = 0; k < XLMC_MAX_LANGS; k++) {
        free(l->s[k].tok);
        free(l->s[k].perm);
    }
    for (int i = 0; i < 2; i++) {
        free(l->buf[i].tokens);
        free(l->buf[i].langs);
    }
    free(l);
}

/* ---- steps and state ---- */

int loader_next_step(struct loader *l, struct loader_block *blocks, int max_blocks) {
    if (max_blocks < l->accum)
        return xlmc_error("loader: a step has %d blocks on this rank, room for %d", l->accum,
                          max_blocks);
    struct step_buf *b;
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        while (!l->ready)
            pthread_cond_wait(&l->cv, &l->mu);
        l->ready = 0;
        l->front = 1 - l->front;
        b = &l->buf[l->front];
        if (!b->rc) l->served = b->after;
        l->want = 1; /* read the step after this one while the caller computes */
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    } else {
        b = &l->buf[l->front];
        if (!fill_step(l, b, &l->fill)) l->served = b->after;
    }
    if (b->rc) return -1;
    int rows = l->o.block_rows;
    for (int i = 0; i < l->accum; i++) {
        blocks[i].rows = rows;
        blocks[i].T = l->o.seq_len;
        blocks[i].tokens = b->tokens + (size_t)i * (size_t)rows * (size_t)l->W;
        blocks[i].langs = b->langs + (size_t)i * (size_t)rows;
        blocks[i].row0 = (uint32_t)((l->o.rank + i * l->o.world) * rows);
    }
    return l->accum;
}

void loader_get_state(const struct loader *l, struct loader_state *st) {
    *st = l->served;
}

int loader_set_state(struct loader *l, const struct loader_state *st) {
    for (int k = 0; k < l->o.n_langs; k++)
        if (st->cursor[k] > l->s[k].n_win)
            return xlmc_error("loader: the saved state is at window %llu of %s, but the %s split "
                              "of %s has %llu windows (different data or seq_len?)",
                              (unsigned long long)st->cursor[k], shard_lang_code(k), l->o.split,
                              l->o.dir, (unsigned long long)l->s[k].n_win);
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        while (l->busy)
            pthread_cond_wait(&l->cv, &l->mu);
        l->served = l->fill = *st;
        l->ready = 0;
        l->want = 1; /* the read-ahead step came from the old position: redo it */
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    } else {
        l->served = l->fill = *st;
    }
    return 0;
}

uint64_t loader_windows(const struct loader *l, int lang) {
    return lang >= 0 && lang < l->o.n_langs ? l->s[lang].n_win : 0;
}

int loader_read_window(struct loader *l, int lang, uint64_t i, int32_t *out) {
    if (lang < 0 || lang >= l->o.n_langs || i >= l->s[lang].n_win)
        return xlmc_error("loader: window %llu of language %d is outside the %s split of %s",
                          (unsigned long long)i, lang, l->o.split, l->o.dir);
    memcpy(out, l->s[lang].tok + i * (uint64_t)l->W, (size_t)l->W * sizeof *out);
    return 0;
}
