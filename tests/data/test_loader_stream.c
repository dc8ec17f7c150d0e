/* test_loader_stream: the loader that reads windows from the shards when a step needs them
 * serves bit-identical batches to the in-memory definition (opts.resident: every shard read
 * whole with H5Dread and concatenated, as the loader did before format 2).
 *
 * Shards: en as five version-2 shards of uneven sizes (windows span shards and checksum
 * blocks), de as two version-2 shards and one version-1 shard (read whole, mixed in). Then:
 *   - 1, 2 and 4 ranks, with and without prefetch, over more than one epoch of both
 *     languages: every block equal to the resident loader's (tokens, languages, row0);
 *   - a state saved after K steps with 4 ranks, restored in fresh streamed loaders with 2
 *     ranks: the remaining steps equal the resident 2-rank run that never stopped;
 *   - loader_read_window equal for every window;
 *   - shard_upgrade (`xlmc data-convert`) turns the version-1 shard into version 2 with the
 *     same stream;
 *   - damage in the last checksum block of a shard (an id changed to another valid id) is
 *     not seen at open but refused at the first read of that block, naming the shard. */
#define _GNU_SOURCE
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T 15
#define W (T + 1)
#define ROWS 4
#define BLOCKS 8
#define STEPS 150
#define K 70 /* restore point */
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

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Shards of `lang` holding about sizes[i] tokens each; version 1 for shards in v1_mask. */
static void write_lang(const char *dir, int lang, const int *sizes, int n, unsigned v1_mask) {
    struct shard_meta m = {.lang_id = lang, .vocab_size = VOCAB, .vocab_hash = HASH};
    snprintf(m.lang, sizeof m.lang, "%s", shard_lang_code(lang));
    snprintf(m.split, sizeof m.split, "train");
    for (int i = 0; i < n; i++) {
        struct shard_writer w;
        shard_writer_init(&w, &m);
        if (v1_mask >> i & 1) w.version = 1;
        shard_writer_add_source(&w, "synthetic");
        while (w.meta.n_tokens < sizes[i]) {
            int32_t ids[40];
            int len = 1 + (int)(next_rand() % 40);
            for (int k = 0; k < len; k++)
                ids[k] = TOK_NUM_SPECIAL + (int32_t)(next_rand() % (VOCAB - TOK_NUM_SPECIAL));
            shard_writer_append(&w, ids, (size_t)len);
        }
        char path[512];
        snprintf(path, sizeof path, "%s/train-%s-r000-%05d.h5", dir, m.lang, i);
        if (shard_writer_flush(&w, path)) exit(1);
        shard_writer_free(&w);
    }
}

static struct loader *open_loader(const char *dir, int rank, int world, int prefetch,
                                  int resident) {
    struct loader_opts o = {.dir = dir,
                            .split = "train",
                            .seq_len = T,
                            .block_rows = ROWS,
                            .global_rows = BLOCKS * ROWS,
                            .rank = rank,
                            .world = world,
                            .seed = 7,
                            .n_langs = 2,
                            .vocab_hash = HASH,
                            .vocab_size = VOCAB,
                            .shuffle = 1,
                            .prefetch = prefetch,
                            .resident = resident};
    struct loader *l = loader_open(&o);
    if (!l) {
        fprintf(stderr, "FAIL: loader_open(%s, rank %d of %d, resident %d)\n", dir, rank, world,
                resident);
        exit(1);
    }
    return l;
}

/* Steps [from, to) of a and b (same rank and world) are identical. 0 or the first bad step. */
static int same_steps(struct loader *a, struct loader *b, int from, int to, const char *what) {
    struct loader_block ba[BLOCKS], bb[BLOCKS];
    for (int s = from; s < to; s++) {
        int na = loader_next_step(a, ba, BLOCKS), nb = loader_next_step(b, bb, BLOCKS);
        int ok = na > 0 && na == nb;
        for (int i = 0; ok && i < na; i++)
            ok = ba[i].rows == bb[i].rows && ba[i].row0 == bb[i].row0 &&
                 !memcmp(ba[i].tokens, bb[i].tokens, sizeof(int32_t) * ROWS * W) &&
                 !memcmp(ba[i].langs, bb[i].langs, sizeof(int32_t) * ROWS);
        CHECK(ok, "%s: step %d differs (%d and %d blocks)", what, s, na, nb);
        if (!ok) return s;
    }
    return 0;
}

static void copy_file(const char *src, const char *dst) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
    if (system(cmd)) exit(1);
}

int main(void) {
    char dir[] = "/tmp/test_loader_stream_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const int en_sizes[] = {9000, 17, 20000, 3, 12000}, de_sizes[] = {7000, 15000, 5000};
    write_lang(dir, 1, en_sizes, 5, 0);
    write_lang(dir, 0, de_sizes, 3, 1u << 1); /* de shard 1 in format version 1 */

    /* 1, 2, 4 ranks against the in-memory definition, over more than one epoch */
    for (int world = 1; world <= 4; world *= 2)
        for (int rank = 0; rank < world; rank++) {
            struct loader *s = open_loader(dir, rank, world, rank % 2 == 0, 0);
            struct loader *r = open_loader(dir, rank, world, 0, 1);
            char what[64];
            snprintf(what, sizeof what, "rank %d of %d", rank, world);
            same_steps(s, r, 0, STEPS, what);
            struct loader_state st;
            loader_get_state(s, &st);
            CHECK(st.epoch[0] >= 1 && st.epoch[1] >= 1, "%s: epochs reached de %llu en %llu", what,
                  (unsigned long long)st.epoch[0], (unsigned long long)st.epoch[1]);
            loader_close(s);
            loader_close(r);
        }

    /* save after K steps with 4 ranks, restore with 2: equal to 2 ranks that never stopped */
    struct loader_state st;
    {
        struct loader *l = open_loader(dir, 3, 4, 1, 0);
        struct loader_block b[BLOCKS];
        for (int s = 0; s < K; s++)
            loader_next_step(l, b, BLOCKS);
        loader_get_state(l, &st);
        loader_close(l);
    }
    for (int rank = 0; rank < 2; rank++) {
        struct loader *s = open_loader(dir, rank, 2, 1, 0);
        struct loader *r = open_loader(dir, rank, 2, 0, 1);
        struct loader_block b[BLOCKS];
        for (int i = 0; i < K; i++)
            loader_next_step(r, b, BLOCKS);
        CHECK(!loader_set_state(s, &st), "loader_set_state");
        same_steps(s, r, K, STEPS, "restored 4 -> 2");
        loader_close(s);
        loader_close(r);
    }

    /* every window by index */
    {
        struct loader *s = open_loader(dir, 0, 1, 0, 0), *r = open_loader(dir, 0, 1, 0, 1);
        int32_t a[W], b[W];
        for (int k = 0; k < 2; k++) {
            CHECK(loader_windows(s, k) == loader_windows(r, k) && loader_windows(s, k) > 1000,
                  "windows of %d: %llu and %llu", k, (unsigned long long)loader_windows(s, k),
                  (unsigned long long)loader_windows(r, k));
            for (uint64_t i = 0; i < loader_windows(r, k); i++)
                if (loader_read_window(s, k, i, a) || loader_read_window(r, k, i, b) ||
                    memcmp(a, b, sizeof a)) {
                    CHECK(0, "window %llu of %d differs", (unsigned long long)i, k);
                    break;
                }
        }
        loader_close(s);
        loader_close(r);
    }

    /* data-convert: the version-1 shard becomes version 2 with the same stream */
    char up[sizeof dir + 8], path[512], upath[512];
    snprintf(up, sizeof up, "%s/up", dir);
    if (mkdir(up, 0700)) return 1;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/train-de-r000-%05d.h5", dir, i);
        snprintf(upath, sizeof upath, "%s/train-de-r000-%05d.h5", up, i);
        copy_file(path, upath);
        CHECK(shard_upgrade(upath) == (i == 1 ? 0 : 1), "shard_upgrade(%s)", upath);
    }
    {
        struct shard_meta m;
        struct shard_stream fs;
        snprintf(upath, sizeof upath, "%s/train-de-r000-00001.h5", up);
        CHECK(shard_stream_open(upath, HASH, VOCAB, &m, &fs) == 0 && m.version == 2,
              "upgraded shard is not version 2");
        shard_stream_close(&fs);
        struct loader *s = open_loader(up, 0, 1, 0, 0), *r = open_loader(dir, 0, 1, 0, 1);
        int32_t a[W], b[W];
        for (uint64_t i = 0; i < loader_windows(r, 0); i++)
            if (loader_read_window(s, 0, i, a) || loader_read_window(r, 0, i, b) ||
                memcmp(a, b, sizeof a)) {
                CHECK(0, "upgraded: window %llu of de differs", (unsigned long long)i);
                break;
            }
        loader_close(s);
        loader_close(r);
    }

    /* late damage: one id in the last block of en shard 4 becomes another valid id */
    {
        snprintf(path, sizeof path, "%s/train-en-r000-00004.h5", dir);
        struct shard_meta m;
        struct shard_stream fs;
        if (shard_stream_open(path, HASH, VOCAB, &m, &fs)) return 1;
        uint64_t at = fs.tok_at + (uint64_t)(fs.n - 5) * 2;
        shard_stream_close(&fs);
        int fd = open(path, O_RDWR);
        unsigned char byte;
        if (fd < 0 || pread(fd, &byte, 1, (off_t)at) != 1) return 1;
        byte ^= 1; /* ids are >= 14 and < 30000: the neighbour is a valid id too */
        if (pwrite(fd, &byte, 1, (off_t)at) != 1) return 1;
        close(fd);
        char log[sizeof dir + 16];
        snprintf(log, sizeof log, "%s/stderr.txt", dir);
        fflush(stderr);
        int saved = dup(2), lf = open(log, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        dup2(lf, 2);
        struct loader *l = open_loader(dir, 0, 1, 1, 0);
        struct loader_block b[BLOCKS];
        int step = 0, rc = 0;
        for (; step < 2 * STEPS && (rc = loader_next_step(l, b, BLOCKS)) > 0; step++)
            ;
        loader_close(l);
        fflush(stderr);
        dup2(saved, 2);
        close(lf);
        char msg[1024] = "";
        FILE *f = fopen(log, "r");
        size_t got = f ? fread(msg, 1, sizeof msg - 1, f) : 0;
        msg[got] = '\0';
        if (f) fclose(f);
        CHECK(rc == -1 && strstr(msg, path) && strstr(msg, "checksum"),
              "damage: step %d rc %d, message: %s", step, rc, msg);
        printf("late damage refused at step %d: %s", step, msg);
    }

    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) failures++;
    if (failures) return 1;
    printf("PASS\n");
    return 0;
}
