/* shard_stream.c — reading a version-2 shard's token stream in place (see shard.h).
 *
 * Why pread at H5Dget_offset rather than H5Dread or mmap: /tokens is contiguous and
 * uncompressed, so its bytes lie as they are at one file offset; a pread of a window goes
 * through the page cache, which the ranks of a node share, costs one system call, and does
 * not count the file's pages in the process's resident set (an mmap would, as the pages it
 * touches over an epoch add up). HDF5 is used only at open, to check the layout and find the
 * offsets; no HDF5 handle (and no HDF5 file lock) is held while training reads. */
#define _GNU_SOURCE /* pread, posix_fadvise */
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* File offset and length of a contiguous, unfiltered 1-D dataset of `type_size`-byte
 * elements; -1 if it is not one. */
static int flat_dataset(hid_t f, const char *name, size_t type_size, uint64_t *at, int64_t *n) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d), pl = H5Dget_create_plist(d);
    hsize_t dims[1] = {0};
    int ok = sp >= 0 && t >= 0 && pl >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == 1 && H5Tget_size(t) == type_size &&
             H5Tget_class(t) == H5T_INTEGER && H5Tget_order(t) == H5T_ORDER_LE &&
             H5Pget_layout(pl) == H5D_CONTIGUOUS && H5Pget_nfilters(pl) == 0;
    haddr_t a = ok ? H5Dget_offset(d) : HADDR_UNDEF;
    if (ok && dims[0] && a == HADDR_UNDEF) ok = 0; /* never written */
    *at = a == HADDR_UNDEF ? 0 : (uint64_t)a;
    *n = (int64_t)dims[0];
    if (pl >= 0) H5Pclose(pl);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

static int stream_layout(hid_t f, const char *path, const struct shard_meta *m,
                         struct shard_stream *s) {
    int64_t block = 0, n_sums = -1;
    s->elem = m->vocab_size <= 65536 ? 2 : 4;
    if (flat_dataset(f, "tokens", (size_t)s->elem, &s->tok_at, &s->n) ||
        flat_dataset(f, "checksums", 8, &s->sums_at, &n_sums))
        return xlmc_error("%s: /tokens or /checksums is not a contiguous, uncompressed "
                          "little-endian dataset as format version 2 requires",
                          path);
    hid_t a = H5Aexists(f, "checksum_tokens") > 0 ? H5Aopen(f, "checksum_tokens", H5P_DEFAULT) : -1;
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, &block) < 0) block = 0;
    if (a >= 0) H5Aclose(a);
    s->block = block;
    s->n_sums = block > 0 && block <= (1 << 20) ? (s->n + block - 1) / block : -1;
    if (s->n != m->n_tokens + m->n_sentences || n_sums != s->n_sums)
        return xlmc_error("%s: %lld ids in /tokens, %lld checksums of %lld tokens, for %lld "
                          "tokens and %lld sentences: the shard is inconsistent",
                          path, (long long)s->n, (long long)n_sums, (long long)block,
                          (long long)m->n_tokens, (long long)m->n_sentences);
    return 0;
}

static int stream_open(const char *path, uint64_t want_hash, int64_t vocab_limit, int pairs,
                       struct shard_meta *meta, struct shard_stream *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    struct shard head;
    if (shard_read_kind(path, want_hash, 0, pairs, &head)) return -1;
    *meta = head.meta;
    if (meta->version == 1) return 1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return xlmc_error("%s: not a readable HDF5 file", path);
    int rc = stream_layout(f, path, meta, s);
    H5Fclose(f);
    /* A file cut short after its metadata would only fail late: check the size now. */
    struct stat st;
    uint64_t end_tok = s->tok_at + (uint64_t)s->n * (uint64_t)s->elem;
    uint64_t end_sums = s->sums_at + (uint64_t)s->n_sums * 8;
    if (!rc && stat(path, &st))
        rc = xlmc_error("%s: %s", path, strerror(errno));
    else if (!rc && ((uint64_t)st.st_size < end_tok || (uint64_t)st.st_size < end_sums))
        rc = xlmc_error("%s: the file is truncated (%lld bytes, the token data ends at %llu)", path,
                        (long long)st.st_size,
                        (unsigned long long)(end_tok > end_sums ? end_tok : end_sums));
    if (rc) return -1;
    s->path = xstrdup(path);
    s->vocab_limit =
        vocab_limit > 0 && vocab_limit < meta->vocab_size ? vocab_limit : meta->vocab_size;
    s->verified = xcalloc((size_t)(s->n_sums + 7) / 8 + 1, 1);
    s->scratch_block = -1;
    return 0;
}

int shard_stream_open(const char *path, uint64_t want_hash, int64_t vocab_limit,
                      struct shard_meta *meta, struct shard_stream *s) {
    return stream_open(path, want_hash, vocab_limit, 0, meta, s);
}

int shard_stream_open_pairs(const char *path, uint64_t want_hash, int64_t vocab_limit,
                            struct shard_meta *meta, struct shard_stream *s) {
    return stream_open(path, want_hash, vocab_limit, 1, meta, s);
}

static int read_at(struct shard_stream *s, void *buf, size_t len, uint64_t at) {
    if (s->fd < 0) {
        s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) return xlmc_error("%s: cannot open: %s", s->path, strerror(errno));
    }
    for (size_t got = 0; got < len;) {
        ssize_t r = pread(s->fd, (char *)buf + got, len - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return xlmc_error("%s: read of %zu bytes at %llu failed: %s", s->path, len,
                              (unsigned long long)at, r ? strerror(errno) : "end of file");
        got += (size_t)r;
    }
    return 0;
}

static uint32_t id_at(const uint8_t *p, int elem) {
    return elem == 2
               ? (uint32_t)p[0] | (uint32_t)p[1] << 8
               : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checksum block c: read it, compare its XXH64 with the stored one, check its ids. */
static int verify_block(struct shard_stream *s, int64_t c) {
    int64_t a = c * s->block, e = a + s->block < s->n ? a + s->block : s->n;
    size_t len = (size_t)(e - a) * (size_t)s->elem;
    uint8_t want[8];
    if (!s->scratch) s->scratch = xmalloc((size_t)s->block * 4);
    s->scratch_block = -1;
    if (read_at(s, s->scratch, len, s->tok_at + (uint64_t)a * (uint64_t)s->elem) ||
        read_at(s, want, 8, s->sums_at + (uint64_t)c * 8))
        return -1;
    uint64_t sum = 0;
    for (int b = 7; b >= 0; b--)
        sum = sum << 8 | want[b];
    if (XXH64(s->scratch, len, 0) != sum)
        return xlmc_error("%s: tokens %lld..%lld fail their checksum: the file is damaged "
                          "(re-run `xlmc prep` or restore it)",
                          s->path, (long long)a, (long long)e - 1);
    for (int64_t t = 0; t < e - a; t++) {
        uint32_t v = id_at(s->scratch + t * s->elem, s->elem);
        if (v >= (uint64_t)s->vocab_limit)
            return xlmc_error("%s: token %lld of the stream has id %u, outside the vocabulary "
                              "of %lld words",
                              s->path, (long long)(a + t), v, (long long)s->vocab_limit);
    }
    s->verified[c / 8] |= (uint8_t)(1u << (c % 8));
    s->scratch_block = c;
    return 0;
}

int shard_stream_read(struct shard_stream *s, int64_t pos, int64_t n, int32_t *out) {
    if (pos < 0 || n < 0 || pos + n > s->n)
        return xlmc_error("%s: ids %lld..%lld requested, the stream has %lld", s->path,
                          (long long)pos, (long long)(pos + n), (long long)s->n);
    int64_t first = n ? pos / s->block : 0, last = n ? (pos + n - 1) / s->block : -1;
    for (int64_t c = first; c <= last; c++)
        if (!(s->verified[c / 8] >> (c % 8) & 1) && verify_block(s, c)) return -1;
    /* Decode in place: the raw bytes go to the tail of out, ids fill it from the front. */
    uint8_t *raw = (uint8_t *)out + (size_t)n * (4 - (size_t)s->elem);
    if (first == last && s->scratch_block == first) /* the block just verified holds it all */
        memcpy(raw, s->scratch + (size_t)(pos - first * s->block) * (size_t)s->elem,
               (size_t)n * (size_t)s->elem);
    else if (n && read_at(s, raw, (size_t)n * (size_t)s->elem,
                          s->tok_at + (uint64_t)pos * (uint64_t)s->elem))
        return -1;
    for (int64_t i = 0; i < n; i++)
        out[i] = (int32_t)id_at(raw + i * s->elem, s->elem);
    return 0;
}

void shard_stream_willneed(struct shard_stream *s, int64_t pos, int64_t n) {
    if (n <= 0 || (s->fd < 0 && read_at(s, NULL, 0, 0))) return;
    int64_t c = pos / s->block;
    if (!(s->verified[c / 8] >> (c % 8) & 1)) { /* the whole block and its sum will be read */
        pos = c * s->block;
        n = s->block;
        (void)posix_fadvise(s->fd, (off_t)(s->sums_at + (uint64_t)c * 8), 8, POSIX_FADV_WILLNEED);
    }
    (void)posix_fadvise(s->fd, (off_t)(s->tok_at + (uint64_t)pos * (uint64_t)s->elem),
                        (off_t)((uint64_t)n * (uint64_t)s->elem), POSIX_FADV_WILLNEED);
}

void shard_stream_close(struct shard_stream *s) {
    if (s->fd >= 0) close(s->fd);
    free(s->path);
    free(s->verified);
    free(s->scratch);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}
