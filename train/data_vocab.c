/* data_vocab.c — which dictionary a data directory was prepared with: its vocab and codes
 * files, else the attributes of one of its shards (see session_data_vocab in
 * train/session.h). */
#include "core/h5io.h"
#include "core/util.h"
#include "data/tokenizer.h"
#include "train/session.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int vocab_from_shard(const char *dir, int *vocab_size, uint64_t *vocab_hash) {
    DIR *d = opendir(dir);
    if (!d) return xlmc_error("--data %s: cannot open the directory (%s)", dir, strerror(errno));
    struct dirent *de;
    char path[XLMC_PATH_MAX];
    int rc = -1;
    h5io_quiet();
    while (rc && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".h5")) continue;
        if (xlmc_path(path, sizeof path, "%s/%s", dir, de->d_name)) break;
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) continue;
        uint64_t size = 0, hash = 0;
        if (!h5io_read_attr_u64(f, "vocab_size", &size) &&
            !h5io_read_attr_u64(f, "vocab_hash", &hash) && size > 0 && size < (1u << 30)) {
            *vocab_size = (int)size;
            *vocab_hash = hash;
            rc = 0;
        }
        H5Fclose(f);
    }
    closedir(d);
    if (rc)
        xlmc_error("--data %s: no vocab file and no shard with vocab_size/vocab_hash "
                   "attributes (prepare it with `xlmc prep`)",
                   dir);
    return rc;
}

int session_data_vocab(const char *dir, int *vocab_size, uint64_t *vocab_hash) {
    char vocab[XLMC_PATH_MAX], codes[XLMC_PATH_MAX];
    if (xlmc_path(vocab, sizeof vocab, "%s/vocab", dir) ||
        xlmc_path(codes, sizeof codes, "%s/codes", dir))
        return -1;
    if (file_exists(vocab) && file_exists(codes)) {
        struct tokenizer *tok = tokenizer_load(codes, vocab);
        if (!tok) return -1;
        *vocab_size = tokenizer_vocab_size(tok);
        *vocab_hash = tokenizer_vocab_hash(tok);
        tokenizer_free(tok);
        return 0;
    }
    return vocab_from_shard(dir, vocab_size, vocab_hash);
}
