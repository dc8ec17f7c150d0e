/* test_loader_coverage: the loader's global batches, checked against streams this test builds
 * itself from the sentences it wrote.
 *
 * Two languages of synthetic sentences (every token id unique, so a served window tells where
 * in the stream it came from) are written as shards. Then, for 1, 2 and 4 ranks simulated in
 * one process (opts.rank/world), with and without prefetch:
 *   - every served row equals window i of its language's stream (sentences + </s>);
 *   - the union over ranks serves every row of every step exactly once, identical to 1 rank;
 *   - the first n_windows rows of a language (epoch 0) are every window exactly once, in an
 *     order that is shuffled and different in epoch 1;
 *   - stopping after k steps and restoring the state in a fresh loader gives the identical
 *     remaining steps, also for a state saved with 4 ranks restored with 2;
 *   - a shard of another vocabulary hash is refused. */
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T 7
#define W (T + 1)
#define ROWS 3   /* block_rows */
#define BLOCKS 8 /* per step over all ranks */
#define STEPS 60
#define VOCAB 30000
#define HASH 0x1234abcdull

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

/* The reference streams: what loader.h says a language's stream is. */
static int32_t *stream[2];
static long stream_len[2], n_windows[2];
static long pos_of[VOCAB]; /* stream position of each (unique) id */
static int lang_of[VOCAB];

static void write_lang(const char *dir, int lang, int n_sent, int *next_id, int n_shards) {
    struct shard_meta m = {.lang_id = lang, .vocab_size = VOCAB, .vocab_hash = HASH};
    snprintf(m.lang, sizeof m.lang, "%s", shard_lang_code(lang));
    snprintf(m.split, sizeof m.split, "train");
    struct shard_writer w;
    shard_writer_init(&w, &m);
    stream[lang] = malloc(sizeof(int32_t) * (size_t)(n_sent * 20));
    for (int s = 0; s < n_sent; s++) {
        int32_t ids[16];
        int n = 1 + (s * 7 + lang * 3) % 13; /* 1..13 tokens */
        for (int k = 0; k < n; k++) {
            ids[k] = (*next_id)++;
            pos_of[ids[k]] = stream_len[lang];
            lang_of[ids[k]] = lang;
            stream[lang][stream_len[lang]++] = ids[k];
        }
        stream[lang][stream_len[lang]++] = TOK_EOS;
        shard_writer_add_source(&w, "synthetic");
        shard_writer_append(&w, ids, (size_t)n);
        if ((s + 1) % (n_sent / n_shards) == 0 || s == n_sent - 1) {
            char path[512];
            snprintf(path, sizeof path, "%s/train-%s-r000-%05d.h5", dir, m.lang, s);
            if (w.meta.n_sentences && shard_writer_flush(&w, path)) exit(1);
        }
    }
    shard_writer_free(&w);
    n_windows[lang] = stream_len[lang] / W;
}

/* Window index of a served row, or -1 if it is not a window of its language. */
static long window_index(const int32_t *row, int lang) {
    int q = row[0] == TOK_EOS ? 1 : 0; /* sentences are non-empty: no two </s> in a row */
    if (row[q] < TOK_NUM_SPECIAL || row[q] >= VOCAB || lang_of[row[q]] != lang) return -1;
    long p = pos_of[row[q]] - q;
    if (p < 0 || p % W || p / W >= n_windows[lang]) return -1;
    if (memcmp(row, stream[lang] + p, W * sizeof *row)) return -1;
    return p / W;
}

/* Served steps: window index and language per global row. */
struct run {
    long win[STEPS][BLOCKS * ROWS];
    int lang[STEPS][BLOCKS * ROWS];
};

static struct loader *open_loader(const char *dir, int rank, int world, int prefetch,
                                  const float *ratio, uint64_t hash) {
    struct loader_opts o = {.dir = dir,
                            .split = "train",
                            .seq_len = T,
                            .block_rows = ROWS,
                            .global_rows = BLOCKS * ROWS,
                            .rank = rank,
                            .world = world,
                            .seed = 42,
                            .lang_ratio = ratio,
                            .n_langs = 2,
                            .vocab_hash = hash,
                            .vocab_size = VOCAB,
                            .shuffle = 1,
                            .prefetch = prefetch};
    return loader_open(&o);
}

/* Steps [from, STEPS) of every rank of `world` into r (rows marked -2 until served). When
 * st is given, the loaders start from it. */
static void serve(const char *dir, int world, int prefetch, const float *ratio, int from,
                  const struct loader_state *st, struct run *r) {
    for (int s = 0; s < STEPS; s++)
        for (int g = 0; g < BLOCKS * ROWS; g++) {
            r->win[s][g] = -2;
            r->lang[s][g] = -1;
        }
    for (int rank = 0; rank < world; rank++) {
        struct loader *l = open_loader(dir, rank, world, prefetch, ratio, HASH);
        CHECK(l, "loader_open failed");
        if (!l) return;
        if (st) CHECK(!loader_set_state(l, st), "loader_set_state failed");
        struct loader_block b[BLOCKS];
        for (int s = from; s < STEPS; s++) {
            int n = loader_next_step(l, b, BLOCKS);
            CHECK(n == BLOCKS / world, "world %d: %d blocks, want %d", world, n, BLOCKS / world);
            for (int i = 0; i < n; i++)
                for (int row = 0; row < b[i].rows; row++) {
                    int g = (int)b[i].row0 + row;
                    CHECK(r->win[s][g] == -2, "world %d step %d row %d served twice", world, s, g);
                    r->lang[s][g] = b[i].langs[row];
                    r->win[s][g] = window_index(b[i].tokens + (size_t)row * W, b[i].langs[row]);
                    CHECK(r->win[s][g] >= 0,
                          "world %d step %d row %d is not a window of its language", world, s, g);
                }
        }
        loader_close(l);
    }
    for (int s = from; s < STEPS; s++)
        for (int g = 0; g < BLOCKS * ROWS; g++)
            CHECK(r->win[s][g] != -2, "world %d step %d row %d served by no rank", world, s, g);
}

static void check_epochs(const struct run *r, const char *what) {
    for (int lang = 0; lang < 2; lang++) {
        char *seen = calloc((size_t)n_windows[lang], 1);
        long count = 0, in_order = 0, e1_same = 0, e1 = 0;
        long *order = malloc(sizeof(long) * (size_t)n_windows[lang]);
        for (int s = 0; s < STEPS; s++)
            for (int g = 0; g < BLOCKS * ROWS; g++) {
                if (r->lang[s][g] != lang) continue;
                long w = r->win[s][g];
                if (w < 0) continue; // already reported by serve()
                if (count < n_windows[lang]) {
                    CHECK(!seen[w], "%s: %s window %ld twice in epoch 0", what,
                          shard_lang_code(lang), w);
                    seen[w] = 1;
                    order[count] = w;
                    in_order += w == count;
                } else if (e1 < n_windows[lang]) {
                    e1_same += w == order[e1];
                    e1++;
                }
                count++;
            }
        CHECK(count >= 2 * n_windows[lang], "%s: %s served %ld rows, fewer than two epochs of %ld",
              what, shard_lang_code(lang), count, n_windows[lang]);
        CHECK(in_order < n_windows[lang] / 4, "%s: epoch 0 of %s is hardly shuffled", what,
              shard_lang_code(lang));
        CHECK(e1_same < n_windows[lang] / 4, "%s: epoch 1 of %s repeats epoch 0's order", what,
              shard_lang_code(lang));
        free(order);
        free(seen);
    }
}

static int runs_equal(const struct run *a, const struct run *b, int from) {
    for (int s = from; s < STEPS; s++)
        for (int g = 0; g < BLOCKS * ROWS; g++)
            if (a->win[s][g] != b->win[s][g] || a->lang[s][g] != b->lang[s][g]) return 0;
    return 1;
}

/* State after k steps of world `world`. */
static void state_after(const char *dir, int world, const float *ratio, int k,
                        struct loader_state *st) {
    struct loader *l = open_loader(dir, world - 1, world, 1, ratio, HASH);
    struct loader_block b[BLOCKS];
    for (int s = 0; s < k; s++)
        loader_next_step(l, b, BLOCKS);
    loader_get_state(l, st);
    loader_close(l);
}

int main(void) {
    char dir[] = "/tmp/test_loader_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    int next_id = TOK_NUM_SPECIAL;
    write_lang(dir, 0, 120, &next_id, 3); /* de: ~120 windows */
    write_lang(dir, 1, 60, &next_id, 1);  /* en: ~60 windows */
    static struct run ref, r;
    const float ratio[2] = {1.0f, 3.0f};
    for (int pass = 0; pass < 2; pass++) {
        const float *rt = pass ? ratio : NULL;
        serve(dir, 1, 0, rt, 0, NULL, &ref);
        check_epochs(&ref, pass ? "ratio 1:3" : "by size");
        for (int world = 1; world <= 4; world *= 2)
            for (int prefetch = 0; prefetch < 2; prefetch++) {
                serve(dir, world, prefetch, rt, 0, NULL, &r);
                CHECK(runs_equal(&ref, &r, 0), "world %d prefetch %d serves other rows than 1 rank",
                      world, prefetch);
            }
        /* k = 5 steps, then resume in fresh loaders: same world, and 4 -> 2 */
        struct loader_state st;
        for (int from_world = 2; from_world <= 4; from_world += 2) {
            state_after(dir, from_world, rt, 5, &st);
            CHECK(st.step == 5, "state.step %llu after 5 steps", (unsigned long long)st.step);
            serve(dir, 2, 1, rt, 5, &st, &r);
            CHECK(runs_equal(&ref, &r, 5), "state of world %d restored in world 2 differs",
                  from_world);
        }
        /* restoring on a loader that already read ahead (prefetch) and served steps */
        state_after(dir, 1, rt, 17, &st);
        struct loader *l = open_loader(dir, 0, 1, 1, rt, HASH);
        struct loader_block b[BLOCKS];
        for (int s = 0; s < 3; s++)
            loader_next_step(l, b, BLOCKS);
        loader_set_state(l, &st);
        loader_next_step(l, b, BLOCKS);
        CHECK(window_index(b[0].tokens, b[0].langs[0]) == ref.win[17][0],
              "set_state on a used loader does not continue at step 17");
        loader_close(l);
    }
    /* sequential evaluation access */
    struct loader *l = open_loader(dir, 0, 1, 0, NULL, 0);
    int32_t win[W];
    CHECK(loader_windows(l, 0) == (uint64_t)n_windows[0] &&
              loader_windows(l, 1) == (uint64_t)n_windows[1],
          "loader_windows %llu %llu, want %ld %ld", (unsigned long long)loader_windows(l, 0),
          (unsigned long long)loader_windows(l, 1), n_windows[0], n_windows[1]);
    for (long i = 0; i < n_windows[1]; i++)
        CHECK(!loader_read_window(l, 1, (uint64_t)i, win) && window_index(win, 1) == i,
              "loader_read_window(en, %ld)", i);
    loader_close(l);
    /* another vocabulary hash is refused */
    fprintf(stderr, "(an error about vocabulary 000000001234abcd is expected next)\n");
    CHECK(!open_loader(dir, 0, 1, 0, NULL, HASH + 1), "a shard of another vocabulary was accepted");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    for (int k = 0; k < 2; k++)
        free(stream[k]);
    if (!failures)
        printf("PASS: %ld + %ld windows, 1/2/4 ranks, resume 2->2 and 4->2\n", n_windows[0],
               n_windows[1]);
    return failures ? 1 : 0;
}
