/* loader.c — global, rank-independent batches of token windows from HDF5 shards (semantics in
 * loader.h, file format in data/README.md).
 *
 * Every language's shards, in file-name order, make one stream of sentences, each followed by
 * </s>; window i of a language is stream[i*(T+1) .. (i+1)*(T+1)), the tail shorter than T+1
 * is not used. The stream is a list of segments, one per shard: a version-2 shard's segment is
 * read in place (shard_stream: the stream is what its /tokens holds), a version-1 shard's (or
 * any shard's with opts.resident) is read whole into memory at open. An epoch of a language
 * visits its windows in a bijection keyed by (seed, language, epoch) and computed per
 * position, so a state of three counters per language (epoch, cursor) plus the step counter
 * recreates the position exactly, and no per-window table is held. */
#include "data/loader.h"
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/philox.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Rows announced to the kernel ahead of the one read: 4 ranks x 64 fill a 256-deep disk queue.
 * Measured at 2 G tokens, cold (loader_scale), against all rows of a step announced before
 * its first read: 10% fewer disk reads, 1.7x the tokens/s with 1 rank, 1.3x with 4. */
#define LOADER_AHEAD 64

/* Stream positions [start, start + n) of a language: in memory or in a shard file. */
struct segment {
    uint64_t start, n;
    int32_t *mem;             /* (n) resident ids, or NULL */
    struct shard_stream file; /* when mem is NULL */
};

struct lang_stream {
    struct segment *seg; /* (n_seg) in stream order */
    int n_seg;
    uint64_t n_tok, n_win;
};

struct row_plan {
    int lang;
    uint64_t win;
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
    struct row_plan *plan;      /* (accum * block_rows) this rank's rows in the step read now */
    struct row_plan *plan_next; /* (accum * block_rows) and in the step after it */
    int announced;              /* the kernel was told of announced_step's windows */
    uint64_t announced_step;
    size_t announced_rows; /* of announced_step, from its first row */
    pthread_mutex_t io_mu; /* segment reads: the prefetch thread and loader_read_window */
    int warned_v1;
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

/* Position `cursor` of language k's window order in `epoch`: a bijection of [0, n) — a
 * 4-round Feistel network with Philox round functions on the smallest 2^(2h) >= n, walking
 * the cycle until the value falls inside [0, n) (expected < 4 walks). Unlike a stored
 * Fisher-Yates table it needs no memory, so it works for any corpus size. */
static uint64_t perm_at(uint64_t seed, int k, uint64_t epoch, uint64_t n, uint64_t cursor) {
    if (n < 2) return cursor;
    int h = 1;
    while (h < 32 && (1ull << (2 * h)) < n)
        h++;
    uint64_t mask = (1ull << h) - 1, x = cursor;
    uint64_t key = seed ^ ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull);
    do {
        uint64_t left = x >> h, right = x & mask;
        for (uint32_t r = 0; r < 4; r++) {
            struct philox4 p =
                philox4x32_10((uint32_t)right, (uint32_t)(right >> 32), (uint32_t)epoch,
                              (uint32_t)(epoch >> 32) ^ (0x50455200u | r) /* PER */, (uint32_t)key,
                              (uint32_t)(key >> 32));
            uint64_t t = left ^ ((((uint64_t)p.v[0] << 32) | p.v[1]) & mask);
            left = right;
            right = t;
        }
        x = left << h | right;
    } while (x >= n);
    return x;
}

static uint64_t window_of(struct loader *l, int k, uint64_t epoch, uint64_t cursor) {
    if (!l->o.shuffle) return cursor;
    return perm_at(l->o.seed, k, epoch, l->s[k].n_win, cursor);
}

/* The segment of language k holding stream position pos (binary search; pos < n_tok). */
static struct segment *segment_at(struct lang_stream *s, uint64_t pos) {
    int lo = 0, hi = s->n_seg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->seg[mid].start <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return &s->seg[lo];
}

/* Stream positions [pos, pos + n) of language k into out; a window may span shards. */
static int read_stream(struct loader *l, int k, uint64_t pos, uint64_t n, int32_t *out) {
    while (n) {
        struct segment *g = segment_at(&l->s[k], pos);
        uint64_t at = pos - g->start, take = g->n - at < n ? g->n - at : n;
        if (g->mem)
            memcpy(out, g->mem + at, (size_t)take * sizeof *out);
        else if (shard_stream_read(&g->file, (int64_t)at, (int64_t)take, out))
            return -1;
        pos += take;
        n -= take;
        out += take;
    }
    return 0;
}

static void willneed(struct loader *l, int k, uint64_t pos, uint64_t n) {
    struct segment *g = segment_at(&l->s[k], pos);
    uint64_t at = pos - g->start;
    if (!g->mem)
        shard_stream_willneed(&g->file, (int64_t)at, (int64_t)(g->n - at < n ? g->n - at : n));
}

/* The rows of this rank in the step that starts at *st into plan (and their languages into
 * langs when not NULL); advances *st over all blocks of the step, every rank's. */
static void plan_step(struct loader *l, struct loader_state *st, struct row_plan *plan,
                      int32_t *langs) {
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
            uint64_t c = st->cursor[k]++;
            if (!mine) continue; /* other ranks' rows advance the cursor only */
            size_t row = blk * (size_t)rows + (size_t)r;
            plan[row].lang = k;
            plan[row].win = window_of(l, k, st->epoch[k], c);
            if (langs) langs[row] = k;
        }
    }
    st->step++;
}

static void announce(struct loader *l, const struct row_plan *p) {
    willneed(l, p->lang, p->win * (uint64_t)l->W, (uint64_t)l->W);
}

/* One step from state *st into b (this rank's blocks); advances *st over all blocks. */
static int fill_step(struct loader *l, struct step_buf *b, struct loader_state *st) {
    if (l->weight_sum <= 0)
        return b->rc = xlmc_error("%s: the %s split has no window of %d tokens in any language "
                                  "with a sampling weight (more text, or a shorter seq_len)",
                                  l->o.dir, l->o.split, l->W);
    /* The plans of this step and the next first (they depend on the state only), then the
     * reads, each with the window LOADER_AHEAD rows later announced to the kernel, so that a
     * cold cache has that many reads in flight and none runs dry between steps. */
    struct loader_state before = *st;
    plan_step(l, st, l->plan, b->langs);
    struct loader_state next = *st;
    plan_step(l, &next, l->plan_next, NULL);
    size_t n_rows = (size_t)l->accum * (size_t)l->o.block_rows;
    int rc = 0;
    pthread_mutex_lock(&l->io_mu);
    /* Row i < n_rows is this step's, i >= n_rows the next's. A bounded lead, not all rows at
     * once: the ranks of a node then stay within the disk's queue together instead of
     * blocking in fadvise on a full one while the rows they read next wait behind it. */
    size_t told = l->announced && l->announced_step == before.step ? l->announced_rows : 0;
    for (size_t row = 0; row < n_rows && !rc; row++) {
        for (; told < 2 * n_rows && told <= row + LOADER_AHEAD; told++)
            announce(l, told < n_rows ? &l->plan[told] : &l->plan_next[told - n_rows]);
        rc = read_stream(l, l->plan[row].lang, l->plan[row].win * (uint64_t)l->W, (uint64_t)l->W,
                         b->tokens + row * (size_t)l->W);
    }
    l->announced = !rc;
    l->announced_step = st->step;
    l->announced_rows = rc ? 0 : told - n_rows;
    pthread_mutex_unlock(&l->io_mu);
    if (rc) {
        *st = before; /* not advanced: a failed step is failed again, not skipped */
        return b->rc = -1;
    }
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

static struct segment *add_segment(struct lang_stream *s, uint64_t n) {
    s->seg = xrealloc(s->seg, (size_t)(s->n_seg + 1) * sizeof *s->seg);
    struct segment *g = &s->seg[s->n_seg++];
    memset(g, 0, sizeof *g);
    g->file.fd = -1;
    g->start = s->n_tok;
    g->n = n;
    s->n_tok += n;
    return g;
}

/* Shard sh read whole: its sentences, each followed by </s>, as a resident segment. */
static void add_resident(struct lang_stream *s, const struct shard *sh) {
    uint64_t n = (uint64_t)sh->meta.n_tokens + (uint64_t)sh->meta.n_sentences;
    if (!n) return;
    struct segment *g = add_segment(s, n);
    g->mem = xmalloc((size_t)n * sizeof *g->mem);
    uint64_t at = 0;
    for (int64_t i = 0; i < sh->meta.n_sentences; i++) {
        int64_t a = sh->offsets[i], len = sh->offsets[i + 1] - a;
        memcpy(g->mem + at, sh->tokens + a, (size_t)len * sizeof *g->mem);
        at += (uint64_t)len;
        g->mem[at++] = TOK_EOS;
    }
}

static int check_shard(const struct loader_opts *o, const char *path, const struct shard_meta *m) {
    if (m->lang_id >= o->n_langs)
        return xlmc_error("%s: language %s has id %d, but the model has %d language(s)", path,
                          m->lang, m->lang_id, o->n_langs);
    if (strcmp(m->split, o->split))
        return xlmc_error("%s: the shard says split '%s', its name says '%s'", path, m->split,
                          o->split);
    return 0;
}

/* One shard into its language's stream: in place (version 2) or whole (version 1, resident). */
static int add_shard(struct loader *l, const char *path, uint64_t *hash) {
    const struct loader_opts *o = &l->o;
    struct shard_meta m;
    struct shard_stream fs;
    int rc = 0, v1 = 1;
    if (!o->resident) {
        if ((v1 = shard_stream_open(path, *hash, o->vocab_size, &m, &fs)) < 0) return -1;
        if (!*hash) *hash = m.vocab_hash; /* the first shard fixes it for the rest */
        if (check_shard(o, path, &m)) {
            if (!v1) shard_stream_close(&fs);
            return -1;
        }
        if (!v1) {
            if (fs.n)
                add_segment(&l->s[m.lang_id], (uint64_t)fs.n)->file = fs;
            else
                shard_stream_close(&fs);
            return 0;
        }
        if (!l->warned_v1++)
            xlmc_warn("%s: format version 1 (compressed): such shards are read whole into "
                      "memory; `xlmc data-convert %s` upgrades them in place",
                      path, o->dir);
    }
    struct shard sh;
    if (shard_read(path, *hash, 1, &sh)) return -1;
    if (!*hash) *hash = sh.meta.vocab_hash;
    rc = check_shard(o, path, &sh.meta);
    for (int64_t t = 0; !rc && o->vocab_size > 0 && t < sh.meta.n_tokens; t++)
        if (sh.tokens[t] >= o->vocab_size)
            rc = xlmc_error("%s: token %lld has id %d >= the model's vocab_size %d", path,
                            (long long)t, sh.tokens[t], o->vocab_size);
    if (!rc) add_resident(&l->s[sh.meta.lang_id], &sh);
    shard_free(&sh);
    return rc;
}

static int load_shards(struct loader *l) {
    const struct loader_opts *o = &l->o;
    char **paths;
    int n;
    if (shard_list(o->dir, o->split, &paths, &n)) return -1;
    if (!n)
        return xlmc_error("%s: no %s shards (%s-*.h5): prepare the directory with `xlmc prep`",
                          o->dir, o->split, o->split);
    uint64_t hash = o->vocab_hash;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = add_shard(l, paths[i], &hash);
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
    pthread_mutex_init(&l->io_mu, NULL);
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
    l->plan = xmalloc(rows * sizeof *l->plan);
    l->plan_next = xmalloc(rows * sizeof *l->plan_next);
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
        for (int i = 0; i < l->s[k].n_seg; i++) {
            free(l->s[k].seg[i].mem);
            if (!l->s[k].seg[i].mem) shard_stream_close(&l->s[k].seg[i].file);
        }
        free(l->s[k].seg);
    }
    free(l->plan);
    free(l->plan_next);
    pthread_mutex_destroy(&l->io_mu);
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
        l->announced = 0;
        l->ready = 0;
        l->want = 1; /* the read-ahead step came from the old position: redo it */
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    } else {
        l->served = l->fill = *st;
        l->announced = 0;
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
    pthread_mutex_lock(&l->io_mu);
    int rc = read_stream(l, lang, i * (uint64_t)l->W, (uint64_t)l->W, out);
    pthread_mutex_unlock(&l->io_mu);
    return rc;
}
