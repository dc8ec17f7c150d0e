/* test_shard_craft DIR: writes DIR/train-en-r000-00000.h5, a well-formed shard whose sentence
 * holds the id 150 although its vocab_size says 100 — the corrupt input that test_data_errors
 * feeds to `xlmc data-info` (prep itself never writes one). */
#include "data/shard.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_shard_craft DIR\n");
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
    const int32_t ids[] = {20, 30, 150, 40};
    shard_writer_add_source(&w, "crafted");
    shard_writer_append(&w, ids, 4);
    char path[4200];
    snprintf(path, sizeof path, "%s/train-en-r000-00000.h5", argv[1]);
    int rc = shard_writer_flush(&w, path);
    shard_writer_free(&w);
    return rc ? 1 : 0;
}
