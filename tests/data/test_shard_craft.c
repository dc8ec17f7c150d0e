/* test_shard_craft DIR [v1]: writes DIR/train-en-r000-00000.h5, a well-formed shard whose
 * sentence holds the id 150 although its vocab_size says 100 — the corrupt input that
 * test_data_errors feeds to `xlmc data-info` (prep itself never writes one). With v1: a valid
 * shard in format version 1 instead (what prep wrote before version 2), for data-convert. */
#include "data/shard.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    int v1 = argc == 3 && !strcmp(argv[2], "v1");
    if (argc != 2 && !v1) {
        fprintf(stderr, "usage: test_shard_craft DIR [v1]\n");
        return 2;
    }
    struct shard_meta m = {.lang_id = 1,
                           .lang = "en",
                           .split = "train",
                           .vocab_size = 100,
                           .vocab_hash = 0x1234abcdull,
                           .codes_hash = 1};
    struct shard_writer w;
    shard_writer_init(&w, &m);
    const int32_t ids[] = {20, 30, v1 ? 50 : 150, 40};
    w.version = v1 ? 1 : w.version;
    shard_writer_add_source(&w, "crafted");
    shard_writer_append(&w, ids, 4);
    char path[4200];
    snprintf(path, sizeof path, "%s/train-en-r000-00000.h5", argv[1]);
    int rc = shard_writer_flush(&w, path);
    shard_writer_free(&w);
    return rc ? 1 : 0;
}
