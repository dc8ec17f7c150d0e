/* loader_scale — the loader's memory, start-up and window rate against the corpus size
 * (driven by tests/bench/loader_scale.sh, which prints the table).
 *
 *   loader_scale make DIR N_TOKENS   synthetic en train shards (format 2, 16 Mi tokens each,
 *                                    sentences of 1..60 random ids of the xlm-ende vocabulary)
 *                                    written with shard_writer straight to HDF5, no tokenizer
 *   loader_scale drop DIR            evict DIR's files from the page cache (cold runs):
 *                                    posix_fadvise(DONTNEED) on every file, after fdatasync
 *   loader_scale run DIR T ROWS GLOBAL_ROWS RANK WORLD STEPS
 *                                    open a loader as training does (prefetch on), serve STEPS
 *                                    steps, print one line: open seconds, windows and tokens
 *                                    per second served to this rank, tokens per CPU second of
 *                                    the process (what a rank with a core of its own would
 *                                    reach when reads are not waiting on the disk), peak RSS
 *                                    (VmHWM) */
#define _GNU_SOURCE
#include "core/util.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define VOCAB 64699
#define SHARD_TOKENS (16l << 20)

static int make(const char *dir, long n_tokens) {
    struct shard_meta m = {.lang_id = 1,
                           .lang = "en",
                           .split = "train",
                           .vocab_size = VOCAB,
                           .vocab_hash = 0x5ca1ab1eull,
                           .codes_hash = 1};
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)n_tokens;
    struct shard_writer w;
    shard_writer_init(&w, &m);
    shard_writer_add_source(&w, "loader_scale synthetic");
    long done = 0;
    int seq = 0;
    while (done < n_tokens) {
        int32_t ids[60];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int len = 1 + (int)(x % 60);
        for (int k = 0; k < len; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ids[k] = TOK_NUM_SPECIAL + (int32_t)((x >> 16) % (VOCAB - TOK_NUM_SPECIAL));
        }
        shard_writer_append(&w, ids, (size_t)len);
        done += len;
        if (w.meta.n_tokens >= SHARD_TOKENS || done >= n_tokens) {
            char path[4200];
            snprintf(path, sizeof path, "%s/train-en-r000-%05d.h5", dir, seq++);
            if (shard_writer_flush(&w, path)) return 1;
        }
    }
    shard_writer_free(&w);
    return 0;
}

static int drop(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return xlmc_error("%s: cannot open", dir), 1;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = de->d_name[0] == '.' ? -1 : open(path, O_RDONLY);
        if (fd < 0) continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
    return 0;
}

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* CPU seconds of the process so far, all threads (the prefetch thread does the reading). */
static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static int run(char **a) {
    struct loader_opts o = {.dir = a[0],
                            .split = "train",
                            .seq_len = atoi(a[1]),
                            .block_rows = atoi(a[2]),
                            .global_rows = atoi(a[3]),
                            .rank = atoi(a[4]),
                            .world = atoi(a[5]),
                            .seed = 1,
                            .n_langs = 2,
                            .vocab_size = VOCAB,
                            .shuffle = 1,
                            .prefetch = 1};
    int steps = atoi(a[6]);
    long rss0 = vm_hwm_kb();
    double t0 = now_seconds();
    struct loader *l = loader_open(&o);
    if (!l) return 1;
    double t1 = now_seconds(), c1 = cpu_seconds();
    struct loader_block b[4096];
    long rows = 0;
    for (int s = 0; s < steps; s++) {
        int n = loader_next_step(l, b, 4096);
        if (n < 0) return 1;
        for (int i = 0; i < n; i++)
            rows += b[i].rows;
    }
    double t2 = now_seconds(), c2 = cpu_seconds();
    loader_close(l);
    printf("open_s=%.4f windows_per_s=%.0f tokens_per_s=%.0f tokens_per_cpu_s=%.0f rss_mb=%.1f "
           "rss_before_open_mb=%.1f windows=%ld\n",
           t1 - t0, (double)rows / (t2 - t1), (double)rows * (o.seq_len + 1) / (t2 - t1),
           (double)rows * (o.seq_len + 1) / (c2 - c1 > 1e-6 ? c2 - c1 : 1e-6),
           (double)vm_hwm_kb() / 1024, (double)rss0 / 1024, rows);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "make")) return make(argv[2], atol(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "drop")) return drop(argv[2]);
    if (argc == 9 && !strcmp(argv[1], "run")) return run(argv + 2);
    fprintf(stderr, "usage: loader_scale make DIR N_TOKENS | drop DIR |\n"
                    "       run DIR T ROWS GLOBAL_ROWS RANK WORLD STEPS\n");
    return 2;
}
