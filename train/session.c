/* session.c — setup shared by train, eval and generate (see session.h). */
#include "train/session.h"
#include "core/checkpoint.h"
#include "core/util.h"
#include "data/tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int session_launcher_local_rank(void) {
    const char *names[] = {"SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(names[i]);
        char *end = NULL;
        long r = v ? strtol(v, &end, 10) : -1;
        if (v && end != v && *end == '\0' && r >= 0 && r < 1 << 20) return (int)r;
    }
    return -1;
}

const struct ops *session_ops(const char *device, enum precision_kind precision, int local_rank) {
    enum ops_precision p = precision == PRECISION_FP16 ? OPS_FP16 : OPS_FP32;
    if (!strcmp(device, "cpu")) return ops_cpu(p);
    if (!strcmp(device, "cuda")) {
        char why[256] = "";
        int launcher = session_launcher_local_rank();
        const struct ops *o = ops_cuda(p, launcher >= 0 ? launcher : local_rank, why, sizeof why);
        if (!o) xlmc_error("--device cuda: %s (use --device cpu)", why);
        return o;
    }
    xlmc_error("--device %s: unknown device (cpu or cuda)", device);
    return NULL;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A uint64 attribute, or a string of 16 hex digits. 0 or -1. */
static int read_u64_attr(hid_t obj, const char *name, uint64_t *out) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t type = H5Aget_type(a);
    int rc = -1;
    if (type >= 0 && H5Tget_class(type) == H5T_INTEGER) {
        rc = H5Aread(a, H5T_NATIVE_UINT64, out) < 0 ? -1 : 0;
    } else if (type >= 0 && H5Tget_class(type) == H5T_STRING) {
        char buf[64] = "";
        hid_t mem = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(type) > 0) {
            char *s = NULL;
            H5Tset_size(mem, H5T_VARIABLE);
            if (H5Aread(a, mem, &s) >= 0 && s) {
                snprintf(buf, sizeof buf, "%s", s);
                H5free_memory(s);
            }
        } else {
            H5Tset_size(mem, sizeof buf - 1);
            if (H5Aread(a, mem, buf) < 0) buf[0] = 0;
            buf[sizeof buf - 1] = 0;
        }
        H5Tclose(mem);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 16);
        if (buf[0] && !errno && (!*end || *end == ' ')) {
            *out = v;
            rc = 0;
        }
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return rc;
}

static int vocab_from_shard(const char *dir, int *vocab_size, uint64_t *vocab_hash) {
    DIR *d = opendir(dir);
    if (!d) return xlmc_error("--data %s: cannot open the directory (%s)", dir, strerror(errno));
    struct dirent *de;
    char path[4400];
    int rc = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    while (rc && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".h5")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) continue;
        uint64_t size = 0, hash = 0;
        if (!read_u64_attr(f, "vocab_size", &size) && !read_u64_attr(f, "vocab_hash", &hash) &&
            size > 0 && size < (1u << 30)) {
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
    char vocab[4200], codes[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab", dir);
    snprintf(codes, sizeof codes, "%s/codes", dir);
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

int session_model_from_ckpt(const char *ckpt, const struct ops *ops, struct model *m,
                            uint64_t *vocab_hash) {
    struct xlmc_config cfg;
    if (ckpt_read_config(ckpt, &cfg, vocab_hash)) return -1;
    if (model_create(m, &cfg, ops)) return -1;
    if (ckpt_load(ckpt, m, NULL, NULL)) {
        model_destroy(m);
        return -1;
    }
    return 0;
}

void batch_from_windows(struct batch_buf *buf, struct batch *b, const int32_t *windows,
                        const int32_t *langs, int rows, int T, uint32_t row0) {
    if (rows > buf->cap_rows || T != buf->T) {
        batch_buf_free(buf);
        size_t n = (size_t)rows * (size_t)T;
        buf->ids = xmalloc(n * sizeof(int32_t));
        buf->targets = xmalloc(n * sizeof(int32_t));
        buf->langs = xmalloc(n * sizeof(int32_t));
        buf->lengths = xmalloc((size_t)rows * sizeof(int32_t));
        buf->cap_rows = rows;
        buf->T = T;
    }
    // windows (rows, T+1) -> ids (rows, T) = w[0..T-1], targets (rows, T) = w[1..T]
    for (int r = 0; r < rows; r++) {
        const int32_t *w = windows + (size_t)r * (size_t)(T + 1);
        int32_t *ids = buf->ids + (size_t)r * (size_t)T;
        memcpy(ids, w, (size_t)T * sizeof(int32_t));
        memcpy(buf->targets + (size_t)r * (size_t)T, w + 1, (size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++)
            buf->langs[(size_t)r * (size_t)T + (size_t)t] = langs[r];
        buf->lengths[r] = T;
    }
    b->B = rows;
    b->T = T;
    b->ids = buf->ids;
    b->targets = buf->targets;
    b->langs = buf->langs;
    b->lengths = buf->lengths;
    b->row0 = row0;
}

void batch_buf_free(struct batch_buf *buf) {
    free(buf->ids);
    free(buf->targets);
    free(buf->langs);
    free(buf->lengths);
    memset(buf, 0, sizeof *buf);
}

int session_mkdir(const char *path) {
    if (mkdir(path, 0777) && errno != EEXIST)
        return xlmc_error("cannot create directory %s: %s", path, strerror(errno));
    return 0;
}
