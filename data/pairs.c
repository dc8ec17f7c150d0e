/* pairs.c — sentence pairs as TLM rows (see data/pairs.h). */
#include "data/pairs.h"
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/philox.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Philox counter word c2 of the epoch permutations ("PAIR"). */
#define PAIRS_PHILOX_STREAM 0x50414952u

struct pair_shard {
    struct shard_stream st;
    int64_t *off; /* (2 n_pairs + 1) stream offsets: pair q is off[2q] .. off[2q+2] */
    int64_t n_pairs;
    int swap; /* 1: the shard stores lang2's side first */
};

struct pairs {
    struct pairs_opts o;
    struct pair_shard *shards;
    int n_shards;
    uint64_t *usable;  /* (n) shard << 40 | pair index, in file order */
    uint64_t n, total; /* usable pairs, all pairs */
    uint32_t *perm;    /* (n) the order of epoch perm_epoch */
    uint64_t perm_epoch;
    int perm_valid;
    struct loader_state state;
    struct pairs_block *blocks; /* (G / world) */
    int n_blocks;
    int32_t *scratch; /* (T) */
};

/* The stream offsets of a pair shard, checked: increasing, from 0 to the stream's length,
 * every sentence at least one token and its </s>. */
static int read_offsets(const char *path, const struct shard_meta *m, int64_t n_stream,
                        int64_t **out) {
    int64_t n = m->n_sentences + 1;
    int64_t *off = xmalloc((size_t)n * sizeof *off);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "offsets", H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    int rc = sp < 0 || H5Sget_simple_extent_npoints(sp) != n ||
                     H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off) < 0
                 ? -1
                 : 0;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    if (rc) {
        free(off);
        return xlmc_error("%s: cannot read /offsets (%lld entries expected): the file is "
                          "truncated or corrupt (re-run `xlmc prep --pair`)",
                          path, (long long)n);
    }
    for (int64_t i = 0; i + 1 < n && !rc; i++)
        if (off[i + 1] - off[i] < 2) rc = -1;
    if (rc || off[0] != 0 || off[n - 1] != n_stream) {
        free(off);
        return xlmc_error("%s: /offsets do not run from 0 to %lld in sentences of at least one "
                          "token and </s> (corrupt pair shard)",
                          path, (long long)n_stream);
    }
    *out = off;
    return 0;
}

static int open_shards(struct pairs *p) {
    const struct pairs_opts *o = &p->o;
    char prefix[32], **paths;
    int n;
    snprintf(prefix, sizeof prefix, "pairs-%s", o->split);
    if (shard_list(o->dir, prefix, &paths, &n)) return -1;
    p->shards = xcalloc((size_t)(n ? n : 1), sizeof *p->shards);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        struct shard_meta m;
        struct pair_shard *s = &p->shards[p->n_shards];
        int r = shard_stream_open_pairs(paths[i], o->vocab_hash, o->vocab_size, &m, &s->st);
        if (r == 1) rc = xlmc_error("%s: pair shards are format version 2 only", paths[i]);
        if (r) {
            rc = -1;
            break;
        }
        int fwd = m.lang_id == o->lang1 && m.lang2_id == o->lang2;
        int rev = m.lang_id == o->lang2 && m.lang2_id == o->lang1;
        if (!fwd && !rev) { /* another language pair in the same directory */
            shard_stream_close(&s->st);
            continue;
        }
        if (strcmp(m.split, o->split)) {
            rc = xlmc_error("%s: split attribute '%s' but the name says %s", paths[i], m.split,
                            o->split);
            shard_stream_close(&s->st);
            break;
        }
        s->swap = rev;
        s->n_pairs = m.n_sentences / 2;
        if (read_offsets(paths[i], &m, s->st.n, &s->off)) {
            shard_stream_close(&s->st);
            rc = -1;
            break;
        }
        p->n_shards++;
    }
    if (!rc && !p->n_shards)
        rc = xlmc_error("%s: no %s sentence-pair shards for %s-%s (pairs-%s-*.h5): prepare them "
                        "with `xlmc prep --pair %s-%s --input A B`",
                        o->dir, o->split, shard_lang_code(o->lang1), shard_lang_code(o->lang2),
                        o->split, shard_lang_code(o->lang1), shard_lang_code(o->lang2));
    shard_list_free(paths, n);
    return rc;
}

/* The pairs whose row fits T: the two sides with their </s> plus a leading </s> each. */
static void index_pairs(struct pairs *p) {
    for (int s = 0; s < p->n_shards; s++)
        p->total += (uint64_t)p->shards[s].n_pairs;
    p->usable = xmalloc((size_t)(p->total ? p->total : 1) * sizeof *p->usable);
    for (int s = 0; s < p->n_shards; s++) {
        const struct pair_shard *sh = &p->shards[s];
        for (int64_t q = 0; q < sh->n_pairs; q++)
            if (sh->off[2 * q + 2] - sh->off[2 * q] + 2 <= p->o.seq_len)
                p->usable[p->n++] = (uint64_t)s << 40 | (uint64_t)q;
    }
}

/* Row layout of data/pairs.h for usable pair i. */
static int build_row(struct pairs *p, uint64_t i, int32_t *ids, int32_t *pos, int32_t *langs,
                     int32_t *length) {
    const int T = p->o.seq_len;
    struct pair_shard *sh = &p->shards[p->usable[i] >> 40];
    int64_t q = (int64_t)(p->usable[i] & ((1ull << 40) - 1));
    int64_t a0 = sh->off[2 * q], b0 = sh->off[2 * q + 1], e = sh->off[2 * q + 2];
    // tmp (e - a0) = side A + </s>, side B + </s>, as the shard stores them
    int32_t *tmp = p->scratch;
    if (shard_stream_read(&sh->st, a0, e - a0, tmp)) return -1;
    if (tmp[b0 - a0 - 1] != TOK_EOS || tmp[e - a0 - 1] != TOK_EOS)
        return xlmc_error("%s: pair %lld does not end its sides in </s> (corrupt pair shard)",
                          sh->st.path, (long long)q);
    const int32_t *first = sh->swap ? tmp + (b0 - a0) : tmp;
    const int32_t *second = sh->swap ? tmp : tmp + (b0 - a0);
    int n1 = (int)(sh->swap ? e - b0 : b0 - a0), n2 = (int)(e - a0) - n1; /* with their </s> */
    int len = n1 + n2 + 2, t = 0;
    ids[t++] = TOK_EOS;
    memcpy(ids + t, first, (size_t)n1 * sizeof *ids);
    t += n1;
    ids[t++] = TOK_EOS;
    memcpy(ids + t, second, (size_t)n2 * sizeof *ids);
    for (t = 0; t < T; t++) {
        int in2 = t >= n1 + 1; /* the second part starts at its leading </s> */
        if (t >= len) ids[t] = p->o.pad_index;
        // positions restart at 0 with the second part and go on through the padding, as
        // concat_batches' positions[l1:] -= len1 leaves them
        pos[t] = in2 ? t - (n1 + 1) : t;
        langs[t] = in2 ? p->o.lang2 : p->o.lang1;
    }
    *length = len;
    return 0;
}

struct pairs *pairs_open(const struct pairs_opts *opts) {
    const struct pairs_opts *o = opts;
    if (o->seq_len < 6 || o->block_rows < 1 || o->global_rows < o->block_rows ||
        o->global_rows % o->block_rows || o->world < 1 || o->rank < 0 || o->rank >= o->world ||
        (o->global_rows / o->block_rows) % o->world || o->lang1 == o->lang2) {
        xlmc_error("pairs: bad options (T %d, block_rows %d, global_rows %d, rank %d of %d, "
                   "languages %d-%d): global_rows must be a multiple of block_rows * world",
                   o->seq_len, o->block_rows, o->global_rows, o->rank, o->world, o->lang1,
                   o->lang2);
        return NULL;
    }
    struct pairs *p = xcalloc(1, sizeof *p);
    p->o = *o;
    p->scratch = xmalloc((size_t)o->seq_len * sizeof *p->scratch);
    if (open_shards(p)) {
        pairs_close(p);
        return NULL;
    }
    index_pairs(p);
    if (p->n > UINT32_MAX) {
        xlmc_error("%s: %llu %s pairs: at most 2^32 - 1 per split", o->dir,
                   (unsigned long long)p->n, o->split);
        pairs_close(p);
        return NULL;
    }
    if (!p->n) {
        xlmc_error("%s: none of the %llu %s %s-%s pairs fits a row of %d positions", o->dir,
                   (unsigned long long)p->total, o->split, shard_lang_code(o->lang1),
                   shard_lang_code(o->lang2), o->seq_len);
        pairs_close(p);
        return NULL;
    }
    if (p->n < p->total && o->rank == 0)
        fprintf(stderr,
                "pairs: %s %s-%s: %llu of %llu pairs are longer than a row of %d "
                "positions and are skipped\n",
                o->split, shard_lang_code(o->lang1), shard_lang_code(o->lang2),
                (unsigned long long)(p->total - p->n), (unsigned long long)p->total, o->seq_len);
    p->n_blocks = o->global_rows / o->block_rows / o->world;
    p->blocks = xcalloc((size_t)p->n_blocks, sizeof *p->blocks);
    size_t cells = (size_t)o->block_rows * (size_t)o->seq_len;
    for (int k = 0; k < p->n_blocks; k++) {
        struct pairs_block *b = &p->blocks[k];
        b->rows = o->block_rows;
        b->T = o->seq_len;
        b->ids = xmalloc(cells * sizeof(int32_t));
        b->positions = xmalloc(cells * sizeof(int32_t));
        b->langs = xmalloc(cells * sizeof(int32_t));
        b->lengths = xmalloc((size_t)o->block_rows * sizeof(int32_t));
    }
    return p;
}

void pairs_close(struct pairs *p) {
    if (!p) return;
    for (int s = 0; s < p->n_shards; s++) {
        shard_stream_close(&p->shards[s].st);
        free(p->shards[s].off);
    }
    free(p->shards);
    for (int k = 0; k < p->n_blocks; k++) {
        free(p->blocks[k].ids);
        free(p->blocks[k].positions);
        free(p->blocks[k].langs);
        free(p->blocks[k].lengths);
    }
    free(p->blocks);
    free(p->usable);
    free(p->perm);
    free(p->scratch);
    free(p);
}

/* Fisher-Yates over 0..n-1 with draws from Philox keyed by (seed, epoch): the same order on
 * every rank and for every world size. A 64-bit draw modulo i + 1 (<= 2^40) is uniform within
 * 2^-24, far below anything a training run could notice. */
static void make_perm(struct pairs *p, uint64_t epoch) {
    if (p->perm_valid && p->perm_epoch == epoch) return;
    if (!p->perm) p->perm = xmalloc((size_t)p->n * sizeof *p->perm);
    for (uint64_t i = 0; i < p->n; i++)
        p->perm[i] = (uint32_t)i;
    for (uint64_t i = p->n - 1; p->o.shuffle && i > 0; i--) {
        struct philox4 r =
            philox4x32_10((uint32_t)i, (uint32_t)(i >> 32), PAIRS_PHILOX_STREAM, (uint32_t)epoch,
                          (uint32_t)p->o.seed, (uint32_t)(p->o.seed >> 32));
        uint64_t u = (uint64_t)r.v[0] << 32 | r.v[1], j = u % (i + 1);
        uint32_t t = p->perm[i];
        p->perm[i] = p->perm[j];
        p->perm[j] = t;
    }
    p->perm_epoch = epoch;
    p->perm_valid = 1;
}

int pairs_next_step(struct pairs *p, struct pairs_block *blocks, int max_blocks) {
    const struct pairs_opts *o = &p->o;
    if (max_blocks < p->n_blocks)
        return xlmc_error("pairs: %d blocks per step, room for %d", p->n_blocks, max_blocks);
    const int T = o->seq_len;
    for (int k = 0; k < p->n_blocks; k++) {
        int j = o->rank + k * o->world; /* the block's index within the step */
        struct pairs_block *b = &p->blocks[k];
        b->row0 = (uint32_t)(j * o->block_rows);
        for (int r = 0; r < o->block_rows; r++) {
            uint64_t at = p->state.cursor[0] + b->row0 + (uint64_t)r;
            make_perm(p, p->state.epoch[0] + at / p->n);
            size_t c = (size_t)r * (size_t)T;
            if (build_row(p, p->perm[at % p->n], b->ids + c, b->positions + c, b->langs + c,
                          b->lengths + r))
                return -1;
        }
        blocks[k] = *b;
    }
    uint64_t cur = p->state.cursor[0] + (uint64_t)o->global_rows;
    p->state.epoch[0] += cur / p->n;
    p->state.cursor[0] = cur % p->n;
    p->state.step++;
    return p->n_blocks;
}

void pairs_get_state(const struct pairs *p, struct loader_state *st) {
    *st = p->state;
}

int pairs_set_state(struct pairs *p, const struct loader_state *st) {
    if (st->cursor[0] >= p->n)
        return xlmc_error("pairs: the saved cursor %llu is past the %llu %s pairs of this data "
                          "(another data directory or sequence length?)",
                          (unsigned long long)st->cursor[0], (unsigned long long)p->n, p->o.split);
    p->state = *st;
    return 0;
}

uint64_t pairs_count(const struct pairs *p) {
    return p->n;
}

uint64_t pairs_total(const struct pairs *p) {
    return p->total;
}

int pairs_read_row(struct pairs *p, uint64_t i, int32_t *ids, int32_t *positions, int32_t *langs,
                   int32_t *length) {
    if (i >= p->n)
        return xlmc_error("pairs: row %llu of %llu", (unsigned long long)i,
                          (unsigned long long)p->n);
    return build_row(p, i, ids, positions, langs, length);
}
