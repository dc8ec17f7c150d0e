/* test_pairs: the sentence-pair loader (data/pairs.h) and TLM batches (train/batch.h), checked
 * against rows this test lays out itself from the pairs it wrote, following XLM's
 * concat_batches(reset_positions=True): </s> a </s> </s> b </s> <pad>..., positions restarting
 * at 0 with the second part (padding continuing from it), lang1 for the first part and lang2
 * from the second part on.
 *
 * Pairs with unique ids are written as three train shards: two stored en-de, one stored de-en
 * (the loader must swap its sides), and some pairs too long for a row. Then:
 *   - the number of usable pairs equals the pairs that fit (n + m + 4 <= T);
 *   - for 1, 2 and 4 ranks (simulated in one process), over more than two epochs, the rows of
 *     every step are bit-identical to 1 rank's, every row is the expected row of one pair, and
 *     the first epoch serves every usable pair once, in an order different from file order and
 *     from the second epoch's;
 *   - state saved after k steps with 4 ranks, restored with 2 and with 1, continues identically;
 *   - evaluation order (shuffle 0) is file order; pairs_read_row gives the same rows;
 *   - TLM batches are bidirectional, carry the positions, predict only inside lengths;
 *   - refused with a message naming the file: a damaged token (late, at read), a truncated
 *     pair shard, a monolingual shard among pair shards, a pair shard among monolingual
 *     shards (data/loader.h), another vocabulary. */
#include "data/loader.h"
#include "data/pairs.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "train/batch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEQ 24
#define BR 3      /* block_rows */
#define BLOCKS 4  /* per step */
#define NPAIRS 90 /* written */
#define VOCAB 30000
#define HASH 0x1234abcdull
#define EN 1
#define DE 0

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* The pairs as written: side in en and side in de, without </s>. */
static int32_t en_side[NPAIRS][SEQ], de_side[NPAIRS][SEQ];
static int en_len[NPAIRS], de_len[NPAIRS];
static int fits[NPAIRS], n_fit;
static int pair_of_id[VOCAB]; /* pair of each unique id */

/* Expected row of pair i for tlm:en-de (lang1 = en): XLM's concat_batches layout. */
static void expected_row(int i, int32_t *ids, int32_t *pos, int32_t *langs, int32_t *len) {
    int n = en_len[i], m = de_len[i], t = 0;
    ids[t++] = TOK_EOS;
    for (int k = 0; k < n; k++)
        ids[t++] = en_side[i][k];
    ids[t++] = TOK_EOS;
    int second = t; /* the second part starts at its own leading </s> */
    ids[t++] = TOK_EOS;
    for (int k = 0; k < m; k++)
        ids[t++] = de_side[i][k];
    ids[t++] = TOK_EOS;
    *len = t;
    for (; t < SEQ; t++)
        ids[t] = TOK_PAD;
    for (t = 0; t < SEQ; t++) {
        pos[t] = t < second ? t : t - second;
        langs[t] = t < second ? EN : DE;
    }
}

static void write_pairs(const char *dir) {
    int next = 100;
    for (int i = 0; i < NPAIRS; i++) {
        en_len[i] = 1 + (i * 7) % 11;
        de_len[i] = 1 + (i * 5) % 13;
        if (i % 10 == 3) en_len[i] = 17; /* 17 + m + 4 > 24 for m >= 4: too long */
        for (int k = 0; k < en_len[i]; k++)
            pair_of_id[en_side[i][k] = next++] = i;
        for (int k = 0; k < de_len[i]; k++)
            pair_of_id[de_side[i][k] = next++] = i;
        fits[i] = en_len[i] + de_len[i] + 4 <= SEQ;
        n_fit += fits[i];
    }
    /* shards: pairs 0-29 en-de, 30-59 stored de-en, 60-89 en-de (file names keep this order) */
    for (int s = 0; s < 3; s++) {
        int rev = s == 1;
        struct shard_meta m = {.lang_id = rev ? DE : EN,
                               .lang2_id = rev ? EN : DE,
                               .vocab_size = VOCAB,
                               .vocab_hash = HASH};
        snprintf(m.lang, sizeof m.lang, "%s", shard_lang_code(m.lang_id));
        snprintf(m.lang2, sizeof m.lang2, "%s", shard_lang_code(m.lang2_id));
        snprintf(m.split, sizeof m.split, "train");
        struct shard_writer w;
        shard_writer_init(&w, &m);
        shard_writer_add_source(&w, "synthetic");
        for (int i = 30 * s; i < 30 * s + 30; i++) {
            if (rev) {
                shard_writer_append(&w, de_side[i], (size_t)de_len[i]);
                shard_writer_append(&w, en_side[i], (size_t)en_len[i]);
            } else {
                shard_writer_append(&w, en_side[i], (size_t)en_len[i]);
                shard_writer_append(&w, de_side[i], (size_t)de_len[i]);
            }
        }
        char path[512];
        snprintf(path, sizeof path, "%s/pairs-train-%s-%s-r000-%05d.h5", dir, m.lang, m.lang2, s);
        if (shard_writer_flush(&w, path)) exit(1);
        shard_writer_free(&w);
    }
}

static struct pairs_opts opts(const char *dir, int rank, int world, int shuffle) {
    struct pairs_opts o = {.dir = dir,
                           .split = "train",
                           .lang1 = EN,
                           .lang2 = DE,
                           .seq_len = SEQ,
                           .block_rows = BR,
                           .global_rows = BR * BLOCKS,
                           .rank = rank,
                           .world = world,
                           .seed = 77,
                           .vocab_hash = HASH,
                           .vocab_size = VOCAB,
                           .pad_index = TOK_PAD,
                           .shuffle = shuffle};
    return o;
}

/* A step's global rows: ids, positions, langs (rows, SEQ) and lengths. */
#define GR (BR * BLOCKS)
struct step_rows {
    int32_t ids[GR][SEQ], pos[GR][SEQ], langs[GR][SEQ], len[GR];
};

/* Run `steps` steps with `world` ranks (each from state st, or from the start) into out. */
static int run(const char *dir, int world, const struct loader_state *st, int steps,
               struct step_rows *out, struct loader_state *end) {
    struct pairs *p[4] = {0};
    int ok = 1;
    for (int r = 0; r < world; r++) {
        struct pairs_opts o = opts(dir, r, world, 1);
        p[r] = pairs_open(&o);
        if (!p[r]) return -1;
        if (st && pairs_set_state(p[r], st)) ok = 0;
    }
    for (int s = 0; s < steps && ok; s++) {
        memset(&out[s], 0xff, sizeof out[s]);
        for (int r = 0; r < world; r++) {
            struct pairs_block b[BLOCKS];
            int n = pairs_next_step(p[r], b, BLOCKS);
            CHECK(n == BLOCKS / world, "world %d: %d blocks, want %d", world, n, BLOCKS / world);
            if (n < 0) ok = 0;
            for (int k = 0; k < n; k++) {
                CHECK(b[k].rows == BR && b[k].T == SEQ, "block shape %d x %d", b[k].rows, b[k].T);
                CHECK(b[k].row0 == (uint32_t)((r + k * world) * BR), "rank %d block %d row0 %u", r,
                      k, b[k].row0);
                for (int q = 0; q < BR; q++) {
                    int g = (int)b[k].row0 + q;
                    memcpy(out[s].ids[g], b[k].ids + q * SEQ, sizeof out[s].ids[g]);
                    memcpy(out[s].pos[g], b[k].positions + q * SEQ, sizeof out[s].pos[g]);
                    memcpy(out[s].langs[g], b[k].langs + q * SEQ, sizeof out[s].langs[g]);
                    out[s].len[g] = b[k].lengths[q];
                }
            }
        }
    }
    if (end) pairs_get_state(p[0], end);
    for (int r = 1; r < world && end; r++) {
        struct loader_state o;
        pairs_get_state(p[r], &o);
        CHECK(!memcmp(&o, end, sizeof o), "rank %d's state differs from rank 0's", r);
    }
    for (int r = 0; r < world; r++)
        pairs_close(p[r]);
    return ok ? 0 : -1;
}

/* The pair a served row comes from (by its first id), or -1; the row must equal its layout. */
static int row_pair(const struct step_rows *s, int g) {
    if (s->ids[g][1] < 100 || s->ids[g][1] >= VOCAB) return -1;
    int i = pair_of_id[s->ids[g][1]];
    int32_t ids[SEQ], pos[SEQ], langs[SEQ], len;
    expected_row(i, ids, pos, langs, &len);
    if (memcmp(ids, s->ids[g], sizeof ids) || memcmp(pos, s->pos[g], sizeof pos) ||
        memcmp(langs, s->langs[g], sizeof langs) || len != s->len[g])
        return -1;
    return i;
}

/* stderr of fn(arg) into buf (the messages the user would see). */
static int capture(int (*fn)(const char *), const char *arg, char *buf, size_t cap) {
    char tmpl[] = "/tmp/test_pairs_err_XXXXXX";
    int fd = mkstemp(tmpl), saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    int rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    return rc;
}

static int open_and_read_all(const char *dir) {
    struct pairs_opts o = opts(dir, 0, 1, 0);
    struct pairs *p = pairs_open(&o);
    if (!p) return -1;
    int rc = 0;
    int32_t ids[SEQ], pos[SEQ], langs[SEQ], len;
    for (uint64_t i = 0; i < pairs_count(p) && !rc; i++)
        rc = pairs_read_row(p, i, ids, pos, langs, &len);
    pairs_close(p);
    return rc;
}

static int open_mono(const char *dir) {
    struct loader_opts o = {.dir = dir,
                            .split = "train",
                            .seq_len = 8,
                            .block_rows = 1,
                            .global_rows = 1,
                            .rank = 0,
                            .world = 1,
                            .n_langs = 2,
                            .vocab_size = VOCAB};
    struct loader *l = loader_open(&o);
    if (l) loader_close(l);
    return l ? 0 : -1;
}

static void copy_file(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    if (system(cmd)) exit(1);
}

int main(void) {
    char dir[] = "/tmp/test_pairs_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    write_pairs(dir);

    /* usable pairs */
    struct pairs_opts o = opts(dir, 0, 1, 1);
    struct pairs *p = pairs_open(&o);
    CHECK(p, "pairs_open failed");
    if (!p) return 1;
    CHECK(pairs_count(p) == (uint64_t)n_fit && pairs_total(p) == NPAIRS,
          "%llu usable of %llu, want %d of %d", (unsigned long long)pairs_count(p),
          (unsigned long long)pairs_total(p), n_fit, NPAIRS);
    pairs_close(p);

    /* 1, 2, 4 ranks over > 2 epochs */
    const int steps = (2 * n_fit) / GR + 3;
    static struct step_rows ref[64], got[64];
    if (steps > 64) return 1;
    struct loader_state st_end;
    CHECK(!run(dir, 1, NULL, steps, ref, &st_end), "1 rank failed");
    CHECK(st_end.step == (uint64_t)steps && st_end.epoch[0] == (uint64_t)(steps * GR / n_fit) &&
              st_end.cursor[0] == (uint64_t)(steps * GR % n_fit),
          "state after %d steps: step %llu epoch %llu cursor %llu", steps,
          (unsigned long long)st_end.step, (unsigned long long)st_end.epoch[0],
          (unsigned long long)st_end.cursor[0]);
    int seen[NPAIRS] = {0}, order0[NPAIRS], order1[NPAIRS], bad = 0, in_file_order = 1;
    for (int s = 0; s < steps; s++)
        for (int g = 0; g < GR; g++) {
            int at = s * GR + g, i = row_pair(&ref[s], g);
            if (i < 0 || !fits[i]) {
                bad++;
                continue;
            }
            if (at < n_fit) {
                seen[i]++;
                order0[at] = i;
            } else if (at < 2 * n_fit) {
                order1[at - n_fit] = i;
            }
        }
    CHECK(bad == 0, "%d served rows are not the layout of a usable pair", bad);
    for (int i = 0; i < NPAIRS; i++)
        CHECK(seen[i] == fits[i], "pair %d served %d times in epoch 0 (fits %d)", i, seen[i],
              fits[i]);
    for (int k = 1; k < n_fit; k++)
        in_file_order &= order0[k] > order0[k - 1];
    CHECK(!in_file_order, "epoch 0 is in file order: not shuffled");
    CHECK(memcmp(order0, order1, sizeof(int) * (size_t)n_fit), "epochs 0 and 1 in the same order");
    const int worlds[2] = {2, 4};
    for (int w = 0; w < 2; w++) {
        CHECK(!run(dir, worlds[w], NULL, steps, got, NULL), "world %d failed", worlds[w]);
        CHECK(!memcmp(got, ref, sizeof(struct step_rows) * (size_t)steps),
              "world %d: rows differ from 1 rank's", worlds[w]);
    }

    /* restore: 4 ranks for k steps, then 2 ranks and 1 rank from the saved state */
    const int k = steps / 2 + 1;
    struct loader_state mid;
    CHECK(!run(dir, 4, NULL, k, got, &mid), "4 ranks to step %d failed", k);
    for (int w = 2; w >= 1; w--) {
        CHECK(!run(dir, w, &mid, steps - k, got, NULL), "restore with %d ranks failed", w);
        CHECK(!memcmp(got, ref + k, sizeof(struct step_rows) * (size_t)(steps - k)),
              "4 -> %d ranks at step %d: rows differ from the uninterrupted run", w, k);
    }

    /* evaluation order and TLM batches */
    o = opts(dir, 0, 1, 0);
    p = pairs_open(&o);
    CHECK(p, "pairs_open (shuffle 0) failed");
    int prev = -1;
    for (uint64_t i = 0; p && i < pairs_count(p); i++) {
        struct step_rows one;
        CHECK(!pairs_read_row(p, i, one.ids[0], one.pos[0], one.langs[0], &one.len[0]),
              "read_row %llu", (unsigned long long)i);
        int q = row_pair(&one, 0);
        /* file-name order: pairs-train-de-en-...-00001 (pairs 30-59) sorts first */
        int rank_in_files = q < 0 ? -1 : q >= 30 && q < 60 ? q - 30 : q < 30 ? q + 30 : q;
        CHECK(rank_in_files > prev && fits[q], "eval row %llu is pair %d (file rank %d after %d)",
              (unsigned long long)i, q, rank_in_files, prev);
        prev = rank_in_files;
    }
    if (p) {
        struct pairs_block b[BLOCKS];
        CHECK(pairs_next_step(p, b, BLOCKS) == BLOCKS, "sequential step");
        struct mlm_opts mo = {.word_pred = 0.5f,
                              .p_mask = 0.8f,
                              .p_keep = 0.1f,
                              .p_rand = 0.1f,
                              .mask_index = 5,
                              .pad_index = TOK_PAD,
                              .vocab_size = VOCAB};
        struct batch_buf buf = {0};
        struct batch bt;
        batch_tlm_from_block(&buf, &bt, &b[1], &mo, 9, 4);
        CHECK(bt.bidirectional == 1 && bt.positions && bt.row0 == b[1].row0 && bt.B == BR &&
                  bt.T == SEQ,
              "TLM batch fields");
        long pred = 0, outside = 0, pos_bad = 0;
        for (int q = 0; q < BR; q++)
            for (int t = 0; t < SEQ; t++) {
                int c = q * SEQ + t;
                pred += bt.targets[c] >= 0;
                outside += t >= bt.lengths[q] && (bt.targets[c] != -1 || bt.ids[c] != TOK_PAD);
                pos_bad += bt.positions[c] != b[1].positions[c] || bt.langs[c] != b[1].langs[c];
            }
        CHECK(pred > 0 && outside == 0 && pos_bad == 0,
              "TLM batch: %ld predicted, %ld padding touched, %ld positions/langs differ", pred,
              outside, pos_bad);
        batch_buf_free(&buf);
        pairs_close(p);
    }

    /* damage, truncation, foreign shards: refused naming the file */
    char err[4096], path[600], bad_dir[600], name[700];
    snprintf(path, sizeof path, "%s/pairs-train-en-de-r000-00002.h5", dir);
    snprintf(bad_dir, sizeof bad_dir, "%s/bad", dir);
    {
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", bad_dir);
        if (system(cmd)) return 1;
    }
    snprintf(name, sizeof name, "%s/pairs-train-en-de-r000-00002.h5", bad_dir);
    copy_file(path, name);
    struct shard_meta m;
    struct shard_stream ss;
    CHECK(!shard_stream_open_pairs(name, HASH, VOCAB, &m, &ss), "open for damage");
    uint64_t at = ss.tok_at + (uint64_t)(ss.n - 3) * 2; /* a token of the last pair */
    shard_stream_close(&ss);
    int fd = open(name, O_RDWR);
    uint16_t v = 4321;
    CHECK(fd >= 0 && pwrite(fd, &v, 2, (off_t)at) == 2, "damage write");
    close(fd);
    CHECK(capture(open_and_read_all, bad_dir, err, sizeof err) == -1 && strstr(err, name) &&
              strstr(err, "checksum"),
          "a damaged token was not refused naming %s: %s", name, err);
    copy_file(path, name);
    CHECK(truncate(name, 3000) == 0, "truncate");
    CHECK(capture(open_and_read_all, bad_dir, err, sizeof err) == -1 && strstr(err, name),
          "a truncated pair shard was not refused naming %s: %s", name, err);
    remove(name);
    /* a monolingual shard named as a pair shard */
    struct shard_meta mm = {.lang_id = EN, .vocab_size = VOCAB, .vocab_hash = HASH};
    snprintf(mm.lang, sizeof mm.lang, "en");
    snprintf(mm.split, sizeof mm.split, "train");
    struct shard_writer w;
    shard_writer_init(&w, &mm);
    int32_t ids3[3] = {200, 201, 202};
    shard_writer_append(&w, ids3, 3);
    snprintf(name, sizeof name, "%s/pairs-train-en-de-r000-00009.h5", bad_dir);
    CHECK(!shard_writer_flush(&w, name), "write mono");
    shard_writer_free(&w);
    CHECK(capture(open_and_read_all, bad_dir, err, sizeof err) == -1 && strstr(err, name) &&
              strstr(err, "monolingual"),
          "a monolingual shard among pairs was not refused naming %s: %s", name, err);
    remove(name);
    /* a pair shard among monolingual ones */
    snprintf(name, sizeof name, "%s/train-en-r000-00000.h5", bad_dir);
    copy_file(path, name);
    CHECK(capture(open_mono, bad_dir, err, sizeof err) == -1 && strstr(err, name) &&
              strstr(err, "sentence-pair"),
          "a pair shard among monolingual shards was not refused naming %s: %s", name, err);
    remove(name);
    /* another vocabulary */
    snprintf(name, sizeof name, "%s/pairs-train-en-de-r000-00002.h5", bad_dir);
    copy_file(path, name);
    struct pairs_opts oo = opts(bad_dir, 0, 1, 1);
    oo.vocab_hash = HASH + 1;
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    p = pairs_open(&oo);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    CHECK(!p, "a pair shard of another vocabulary was accepted");
    pairs_close(p);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_pairs: ok (%d usable pairs of %d, %d steps of %d rows, 1/2/4 ranks, restore "
           "4->2, 4->1)\n",
           n_fit, NPAIRS, steps, GR);
    return 0;
}
