/* cmd_data.c — `xlmc data-convert`: upgrade a shard directory to the current format in place. */
#include "core/util.h"
#include "train/commands.h"
#include "data/shard.h"

#include <stdio.h>
#include <string.h>

int cmd_data_convert(int argc, char **argv);

int cmd_data_convert(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        int help = argc == 2;
        fprintf(help ? stdout : stderr,
                "usage: xlmc data-convert DIR\n\nRewrites every version-1 shard of DIR (train, "
                "valid, test) in format version %d, which\nthe loader reads in place instead of "
                "whole. Each shard is written as NAME.tmp and renamed over\nNAME: an "
                "interrupted run leaves every shard whole (old or new); run it again\nto "
                "finish. Shards already in version %d are left as they are.\n",
                SHARD_FORMAT_VERSION, SHARD_FORMAT_VERSION);
        return help ? 0 : 2;
    }
    static const char *const splits[] = {"train", "valid", "test"};
    int done = 0, kept = 0;
    for (int s = 0; s < 3; s++) {
        char **paths;
        int n, rc = 0;
        if (shard_list(argv[1], splits[s], &paths, &n)) return 1;
        for (int i = 0; i < n && rc >= 0; i++) {
            rc = shard_upgrade(paths[i]);
            done += rc == 0;
            kept += rc == 1;
        }
        shard_list_free(paths, n);
        if (rc < 0) return 1;
    }
    if (!done && !kept)
        return xlmc_error("%s: no shards (<split>-*.h5): prepare it with `xlmc prep`", argv[1]), 1;
    printf("%s: %d shard(s) converted to format version %d, %d already were\n", argv[1], done,
           SHARD_FORMAT_VERSION, kept);
    return 0;
}
