/* shard.c — writing and reading HDF5 token shards (see shard.h and data/README.md). */
#include "data/shard.h"
#include "core/util.h"
#include "data/tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <xxhash.h>
#include <stdlib.h>
#include <string.h>

/* XLM's en-de model orders its languages alphabetically. */
static const char *const SHARD_LANGS[] = {"de", "en"};

int shard_lang_id(const char *code) {
    for (int i = 0; i < (int)XLMC_ARRAY_LEN(SHARD_LANGS); i++)
        if (!strcmp(code, SHARD_LANGS[i])) return i;
    return -1;
}

const char *shard_lang_code(int lang_id) {
    return lang_id >= 0 && lang_id < (int)XLMC_ARRAY_LEN(SHARD_LANGS) ? SHARD_LANGS[lang_id] : "?";
}

/* ---- writer ---- */

void shard_writer_init(struct shard_writer *w, const struct shard_meta *meta) {
    memset(w, 0, sizeof *w);
    w->meta = *meta;
    w->meta.n_tokens = w->meta.n_sentences = 0;
    w->version = SHARD_FORMAT_VERSION;
    w->off_cap = 1024;
    w->offsets = xmalloc(w->off_cap * sizeof *w->offsets);
    w->offsets[0] = 0;
}

void shard_writer_append(struct shard_writer *w, const int32_t *ids, size_t n) {
    size_t need = (size_t)w->meta.n_tokens + n;
    if (need > w->tok_cap) {
        w->tok_cap = need > 2 * w->tok_cap ? need : 2 * w->tok_cap;
        w->tokens = xrealloc(w->tokens, w->tok_cap * sizeof *w->tokens);
    }
    memcpy(w->tokens + w->meta.n_tokens, ids, n * sizeof *ids);
    w->meta.n_tokens += (int64_t)n;
    if ((size_t)w->meta.n_sentences + 2 > w->off_cap) {
        w->off_cap *= 2;
        w->offsets = xrealloc(w->offsets, w->off_cap * sizeof *w->offsets);
    }
    w->offsets[++w->meta.n_sentences] = w->meta.n_tokens;
}

void shard_writer_add_source(struct shard_writer *w, const char *name) {
    size_t len = w->sources ? strlen(w->sources) : 0, nl = strlen(name);
    /* already recorded? (names are whole lines) */
    for (const char *p = w->sources; p && *p;) {
        const char *e = strchr(p, '\n');
        if ((size_t)(e - p) == nl && !memcmp(p, name, nl)) return;
        p = e + 1;
    }
    w->sources = xrealloc(w->sources, len + nl + 2);
    memcpy(w->sources + len, name, nl);
    w->sources[len + nl] = '\n';
    w->sources[len + nl + 1] = '\0';
}

static int attr_write(hid_t f, const char *name, hid_t file_type, hid_t mem_type,
                      const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mem_type, value) < 0 ? -1 : 0;
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int attr_write_i64(hid_t f, const char *name, int64_t v) {
    return attr_write(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static int attr_write_u64(hid_t f, const char *name, uint64_t v) {
    return attr_write(f, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

/* A variable-length UTF-8 string (what h5py writes for str). */
static int attr_write_str(hid_t f, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    int rc = H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0
                 ? -1
                 : attr_write(f, name, t, t, &v);
    H5Tclose(t);
    return rc;
}

/* The source files as a 1-D attribute of variable-length strings. */
static int attr_write_sources(hid_t f, char *sources) {
    int n = 0;
    for (char *p = sources; p && *p; p = strchr(p, '\n') + 1)
        n++;
    const char **names = xcalloc((size_t)(n ? n : 1), sizeof *names);
    char *copy = xstrdup(sources ? sources : "");
    int k = 0;
    for (char *save = NULL, *tok = strtok_r(copy, "\n", &save); tok;
         tok = strtok_r(NULL, "\n", &save))
        names[k++] = tok;
    hsize_t dims[1] = {(hsize_t)k};
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t sp = H5Screate_simple(1, dims, NULL);
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0) {
        hid_t a = H5Acreate2(f, "source_files", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        rc = a < 0 || H5Awrite(a, t, names) < 0 ? -1 : 0;
        if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    free(copy);
    free(names);
    return rc;
}

/* A 1-D chunked, deflated dataset of n elements. */
static int dataset_write(hid_t f, const char *name, hid_t file_type, hid_t mem_type,
                         const void *data, hsize_t n) {
    hsize_t dims[1] = {n}, chunk[1] = {n < 65536 ? (n ? n : 1) : 65536};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = -1;
    if (sp >= 0 && pl >= 0 && H5Pset_chunk(pl, 1, chunk) >= 0 && H5Pset_shuffle(pl) >= 0 &&
        H5Pset_deflate(pl, 4) >= 0) {
        hid_t d = H5Dcreate2(f, name, file_type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        rc = d < 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
        if (d >= 0 && H5Dclose(d) < 0) rc = -1;
    }
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* A 1-D contiguous, uncompressed dataset of n elements, allocated at creation so that it has
 * a file offset even when n = 0. */
static int dataset_write_flat(hid_t f, const char *name, hid_t type, hid_t mem_type,
                              const void *data, hsize_t n) {
    hsize_t dims[1] = {n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = -1;
    if (sp >= 0 && pl >= 0 && H5Pset_layout(pl, H5D_CONTIGUOUS) >= 0 &&
        H5Pset_alloc_time(pl, H5D_ALLOC_TIME_EARLY) >= 0) {
        hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        rc =
            d < 0 || (n && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) ? -1 : 0;
        if (d >= 0 && H5Dclose(d) < 0) rc = -1;
    }
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Version 2's token data: the stream (each sentence + </s>) as little-endian bytes, its
 * per-block checksums, and offsets into the stream. */
static int write_v2_data(hid_t f, const struct shard_writer *w, int elem) {
    const struct shard_meta *m = &w->meta;
    int64_t n = m->n_tokens + m->n_sentences,
            n_sums = (n + SHARD_SUM_TOKENS - 1) / SHARD_SUM_TOKENS;
    uint8_t *bytes = xmalloc((size_t)(n ? n : 1) * (size_t)elem);
    int64_t *off = xmalloc((size_t)(m->n_sentences + 1) * sizeof *off);
    uint64_t *sums = xmalloc((size_t)(n_sums ? n_sums : 1) * sizeof *sums);
    int64_t at = 0;
    off[0] = 0;
    for (int64_t i = 0; i < m->n_sentences; i++) {
        for (int64_t t = w->offsets[i]; t <= w->offsets[i + 1]; t++, at++) {
            uint32_t v = t < w->offsets[i + 1] ? (uint32_t)w->tokens[t] : TOK_EOS;
            for (int b = 0; b < elem; b++) /* little-endian whatever the host */
                bytes[at * elem + b] = (uint8_t)(v >> (8 * b));
        }
        off[i + 1] = at;
    }
    for (int64_t c = 0; c < n_sums; c++) {
        int64_t a = c * SHARD_SUM_TOKENS, e = a + SHARD_SUM_TOKENS < n ? a + SHARD_SUM_TOKENS : n;
        sums[c] = XXH64(bytes + a * elem, (size_t)(e - a) * (size_t)elem, 0);
    }
    hid_t tok_type = elem == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int rc = dataset_write_flat(f, "tokens", tok_type, tok_type, bytes, (hsize_t)n);
    rc = rc ? rc
            : dataset_write(f, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off,
                            (hsize_t)m->n_sentences + 1);
    rc = rc ? rc
            : dataset_write_flat(f, "checksums", H5T_STD_U64LE, H5T_NATIVE_UINT64, sums,
                                 (hsize_t)n_sums);
    rc = rc ? rc : attr_write_i64(f, "checksum_tokens", SHARD_SUM_TOKENS);
    free(bytes);
    free(off);
    free(sums);
    return rc;
}

static int shard_write_file(struct shard_writer *w, const char *tmp) {
    const struct shard_meta *m = &w->meta;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    char vhex[17], chex[17];
    snprintf(vhex, sizeof vhex, "%016llx", (unsigned long long)m->vocab_hash);
    snprintf(chex, sizeof chex, "%016llx", (unsigned long long)m->codes_hash);
    hid_t tok_type = m->vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int rc = 0;
    if (w->version == 1) {
        rc =
            dataset_write(f, "tokens", tok_type, H5T_NATIVE_INT32, w->tokens, (hsize_t)m->n_tokens);
        rc = rc ? rc
                : dataset_write(f, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, w->offsets,
                                (hsize_t)m->n_sentences + 1);
    } else {
        rc = write_v2_data(f, w, m->vocab_size <= 65536 ? 2 : 4);
    }
    rc = rc ? rc : attr_write_i64(f, "format_version", w->version);
    rc = rc ? rc : attr_write_str(f, "lang", m->lang);
    rc = rc ? rc : attr_write_i64(f, "lang_id", m->lang_id);
    rc = rc ? rc : attr_write_str(f, "split", m->split);
    rc = rc ? rc : attr_write_i64(f, "vocab_size", m->vocab_size);
    rc = rc ? rc : attr_write_u64(f, "vocab_hash", m->vocab_hash);
    rc = rc ? rc : attr_write_str(f, "vocab_hash_hex", vhex);
    rc = rc ? rc : attr_write_u64(f, "codes_hash", m->codes_hash);
    rc = rc ? rc : attr_write_str(f, "codes_hash_hex", chex);
    rc = rc ? rc : attr_write_i64(f, "n_tokens", m->n_tokens);
    rc = rc ? rc : attr_write_i64(f, "n_sentences", m->n_sentences);
    rc = rc ? rc : attr_write_sources(f, w->sources);
    if (m->lang2[0]) { /* a sentence-pair shard (data/README.md, "Sentence pairs") */
        rc = rc ? rc : attr_write_str(f, "lang2", m->lang2);
        rc = rc ? rc : attr_write_i64(f, "lang2_id", m->lang2_id);
        rc = rc ? rc : attr_write_i64(f, "n_pairs", m->n_sentences / 2);
    }
    if (H5Fclose(f) < 0) rc = -1;
    return rc;
}

int shard_writer_flush(struct shard_writer *w, const char *path) {
    size_t len = strlen(path);
    char *tmp = xmalloc(len + 5);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = shard_write_file(w, tmp);
    if (rc) {
        xlmc_error("%s: cannot write the shard (HDF5 error: disk full or no permission?)", tmp);
    } else if (rename(tmp, path)) {
        rc = xlmc_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    if (rc) remove(tmp);
    free(tmp);
    w->meta.n_tokens = w->meta.n_sentences = 0;
    free(w->sources);
    w->sources = NULL;
    return rc;
}

void shard_writer_free(struct shard_writer *w) {
    free(w->tokens);
    free(w->offsets);
    free(w->sources);
    memset(w, 0, sizeof *w);
}

/* ---- reader ---- */

static int attr_read_i64(hid_t f, const char *name, int64_t *v) {
    if (H5Aexists(f, name) <= 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = H5Aread(a, H5T_NATIVE_INT64, v) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

static int attr_read_u64(hid_t f, const char *name, uint64_t *v) {
    if (H5Aexists(f, name) <= 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = H5Aread(a, H5T_NATIVE_UINT64, v) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

static int attr_read_str(hid_t f, const char *name, char *out, size_t cap) {
    if (H5Aexists(f, name) <= 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), t = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (ft >= 0 && t >= 0 && H5Tis_variable_str(ft) > 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5Tget_cset(ft)) >= 0) {
        char *s = NULL;
        if (H5Aread(a, t, &s) >= 0 && s) {
            snprintf(out, cap, "%s", s);
            H5free_memory(s);
            rc = 0;
        }
    }
    if (t >= 0) H5Tclose(t);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

/* Length of 1-D dataset `name`, or -1. */
static int64_t dataset_len(hid_t f, const char *name) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int64_t n = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
                        H5Sget_simple_extent_dims(sp, dims, NULL) == 1
                    ? (int64_t)dims[0]
                    : -1;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return n;
}

static int dataset_read(hid_t f, const char *name, hid_t mem_type, void *out) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    int rc = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0 ? -1 : 0;
    H5Dclose(d);
    return rc;
}

/* The pair attributes: none (monolingual) or lang2, lang2_id and n_pairs = n_sentences / 2,
 * and the kind the caller asked for. */
static int shard_read_pair_meta(hid_t f, const char *path, int pairs, struct shard_meta *m) {
    int64_t id = -1, n_pairs = -1;
    m->lang2[0] = '\0';
    m->lang2_id = -1;
    if (H5Aexists(f, "lang2") <= 0) {
        if (pairs)
            return xlmc_error("%s: a monolingual shard where sentence pairs were expected (pair "
                              "shards are pairs-<split>-*.h5 from `xlmc prep --pair`)",
                              path);
        return 0;
    }
    if (!pairs)
        return xlmc_error("%s: a sentence-pair shard (xlmc prep --pair) where monolingual shards "
                          "were expected: move it out of the way or rename it pairs-*.h5",
                          path);
    if (attr_read_str(f, "lang2", m->lang2, sizeof m->lang2) || attr_read_i64(f, "lang2_id", &id) ||
        attr_read_i64(f, "n_pairs", &n_pairs) || shard_lang_id(m->lang2) != id || id < 0 ||
        id == m->lang_id || n_pairs * 2 != m->n_sentences)
        return xlmc_error("%s: inconsistent pair attributes (lang2 '%s' id %lld, n_pairs %lld, "
                          "%lld sentences, lang '%s')",
                          path, m->lang2, (long long)id, (long long)n_pairs,
                          (long long)m->n_sentences, m->lang);
    m->lang2_id = (int)id;
    return 0;
}

static int shard_read_meta(hid_t f, const char *path, struct shard_meta *m) {
    int64_t version = 0, lang_id = -1;
    if (attr_read_i64(f, "format_version", &version))
        return xlmc_error("%s: no format_version attribute: not a shard written by `xlmc prep`",
                          path);
    if (version != 1 && version != SHARD_FORMAT_VERSION)
        return xlmc_error("%s: shard format version %lld, this xlmc reads versions 1 and %d "
                          "(re-run `xlmc prep`)",
                          path, (long long)version, SHARD_FORMAT_VERSION);
    m->version = (int)version;
    const char *missing = attr_read_i64(f, "lang_id", &lang_id)                  ? "lang_id"
                          : attr_read_str(f, "lang", m->lang, sizeof m->lang)    ? "lang"
                          : attr_read_str(f, "split", m->split, sizeof m->split) ? "split"
                          : attr_read_i64(f, "vocab_size", &m->vocab_size)       ? "vocab_size"
                          : attr_read_u64(f, "vocab_hash", &m->vocab_hash)       ? "vocab_hash"
                          : attr_read_u64(f, "codes_hash", &m->codes_hash)       ? "codes_hash"
                          : attr_read_i64(f, "n_tokens", &m->n_tokens)           ? "n_tokens"
                          : attr_read_i64(f, "n_sentences", &m->n_sentences)     ? "n_sentences"
                                                                                 : NULL;
    if (missing)
        return xlmc_error("%s: the shard attribute '%s' is missing or unreadable", path, missing);
    m->lang_id = (int)lang_id;
    if (lang_id < 0 || shard_lang_id(m->lang) != lang_id || m->vocab_size <= TOK_NUM_SPECIAL ||
        m->n_tokens < 0 || m->n_sentences < 0)
        return xlmc_error("%s: inconsistent shard attributes (lang '%s' id %lld, vocab_size "
                          "%lld, %lld tokens, %lld sentences)",
                          path, m->lang, (long long)lang_id, (long long)m->vocab_size,
                          (long long)m->n_tokens, (long long)m->n_sentences);
    return 0;
}

/* The source_files attribute as '\n'-separated names (empty if absent). */
static char *read_sources(hid_t f) {
    char *out = xstrdup("");
    if (H5Aexists(f, "source_files") <= 0) return out;
    hid_t a = H5Aopen(f, "source_files", H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a), t = H5Tcopy(H5T_C_S1);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (n > 0 && t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0) {
        char **names = xcalloc((size_t)n, sizeof *names);
        if (H5Aread(a, t, names) >= 0) {
            size_t len = 0;
            for (hssize_t i = 0; i < n; i++)
                len += names[i] ? strlen(names[i]) + 1 : 0;
            out = xrealloc(out, len + 1);
            out[0] = '\0';
            for (hssize_t i = 0; i < n; i++)
                if (names[i]) strcat(strcat(out, names[i]), "\n");
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, names);
        }
        free(names);
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return out;
}

/* Version 2 read whole: the checksums over the raw bytes, every </s> in place; then the
 * stream is put in version 1's form (tokens without </s>). */
static int read_v2_data(hid_t f, const char *path, struct shard *s) {
    struct shard_meta *m = &s->meta;
    int64_t n = m->n_tokens + m->n_sentences;
    int64_t block = 0;
    if (attr_read_i64(f, "checksum_tokens", &block) || block < 1 || block > (1 << 20)) block = -1;
    int64_t n_sums = block > 0 ? (n + block - 1) / block : -1;
    if (dataset_len(f, "tokens") != n || dataset_len(f, "offsets") != m->n_sentences + 1 ||
        block < 0 || dataset_len(f, "checksums") != n_sums)
        return xlmc_error("%s: the tokens/offsets/checksums datasets are missing or disagree "
                          "with n_tokens = %lld, n_sentences = %lld (version 2)",
                          path, (long long)m->n_tokens, (long long)m->n_sentences);
    int elem = m->vocab_size <= 65536 ? 2 : 4;
    hid_t tok_type = elem == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    uint8_t *bytes = xmalloc((size_t)(n ? n : 1) * (size_t)elem);
    uint64_t *sums = xmalloc((size_t)(n_sums ? n_sums : 1) * sizeof *sums);
    int64_t *off = xmalloc((size_t)(m->n_sentences + 1) * sizeof *off);
    int rc = 0;
    if ((n && (dataset_read(f, "tokens", tok_type, bytes) ||
               dataset_read(f, "checksums", H5T_NATIVE_UINT64, sums))) ||
        dataset_read(f, "offsets", H5T_NATIVE_INT64, off))
        rc = xlmc_error("%s: cannot read the token data: the file is truncated or corrupt "
                        "(re-run `xlmc prep`)",
                        path);
    for (int64_t c = 0; !rc && c < n_sums; c++) {
        int64_t a = c * block, e = a + block < n ? a + block : n;
        if (XXH64(bytes + a * elem, (size_t)(e - a) * (size_t)elem, 0) != sums[c])
            rc = xlmc_error("%s: tokens %lld..%lld fail their checksum: the file is damaged "
                            "(re-run `xlmc prep` or restore it)",
                            path, (long long)a, (long long)e - 1);
    }
    if (!rc && (off[0] != 0 || off[m->n_sentences] != n))
        rc = xlmc_error("%s: offsets do not run from 0 to the length of tokens", path);
    s->tokens = xmalloc((size_t)(m->n_tokens ? m->n_tokens : 1) * sizeof *s->tokens);
    s->offsets = xmalloc((size_t)(m->n_sentences + 1) * sizeof *s->offsets);
    s->offsets[0] = 0;
    int64_t at = 0;
    for (int64_t i = 0; !rc && i < m->n_sentences; i++) {
        if (off[i + 1] <= off[i] || off[i + 1] - 1 - off[i] > m->n_tokens - at) {
            rc = xlmc_error("%s: offsets do not increase at sentence %lld", path, (long long)i);
            break;
        }
        for (int64_t t = off[i]; t < off[i + 1]; t++) {
            uint32_t v = 0;
            for (int b = elem - 1; b >= 0; b--)
                v = v << 8 | bytes[t * elem + b];
            if (t == off[i + 1] - 1) {
                if (v != TOK_EOS)
                    rc = xlmc_error("%s: sentence %lld does not end in </s> (corrupt shard)", path,
                                    (long long)i);
            } else {
                s->tokens[at++] = (int32_t)v;
            }
        }
        s->offsets[i + 1] = at;
    }
    free(bytes);
    free(sums);
    free(off);
    return rc;
}

static int check_ids(const char *path, const struct shard *s) {
    const struct shard_meta *m = &s->meta;
    if (s->offsets[0] != 0 || s->offsets[m->n_sentences] != m->n_tokens)
        return xlmc_error("%s: offsets do not run from 0 to n_tokens", path);
    for (int64_t i = 0; i < m->n_sentences; i++)
        if (s->offsets[i + 1] < s->offsets[i])
            return xlmc_error("%s: offsets decrease at sentence %lld", path, (long long)i);
    for (int64_t i = 0; i < m->n_tokens; i++)
        if (s->tokens[i] < 0 || s->tokens[i] >= m->vocab_size)
            return xlmc_error("%s: token %lld has id %d, outside the vocabulary of %lld words "
                              "(corrupt shard, or prepared with another vocabulary)",
                              path, (long long)i, s->tokens[i], (long long)m->vocab_size);
    return 0;
}

static int shard_read_data(hid_t f, const char *path, struct shard *s) {
    const struct shard_meta *m = &s->meta;
    s->sources = read_sources(f);
    if (m->version == 2) return read_v2_data(f, path, s) ? -1 : check_ids(path, s);
    if (dataset_len(f, "tokens") != m->n_tokens || dataset_len(f, "offsets") != m->n_sentences + 1)
        return xlmc_error("%s: the tokens/offsets datasets are missing or disagree with "
                          "n_tokens = %lld, n_sentences = %lld",
                          path, (long long)m->n_tokens, (long long)m->n_sentences);
    s->tokens = xmalloc((size_t)(m->n_tokens ? m->n_tokens : 1) * sizeof *s->tokens);
    s->offsets = xmalloc((size_t)(m->n_sentences + 1) * sizeof *s->offsets);
    if ((m->n_tokens && dataset_read(f, "tokens", H5T_NATIVE_INT32, s->tokens)) ||
        dataset_read(f, "offsets", H5T_NATIVE_INT64, s->offsets))
        return xlmc_error("%s: cannot read the token data: the file is truncated or corrupt "
                          "(re-run `xlmc prep`)",
                          path);
    return check_ids(path, s);
}

int shard_read(const char *path, uint64_t want_hash, int tokens, struct shard *s) {
    return shard_read_kind(path, want_hash, tokens, 0, s);
}

int shard_read_kind(const char *path, uint64_t want_hash, int tokens, int pairs, struct shard *s) {
    memset(s, 0, sizeof *s);
    /* HDF5 would print its own error stack: we report the file and the cause ourselves. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("%s: not a readable HDF5 file (truncated or corrupt? re-run `xlmc "
                          "prep`)",
                          path);
    int rc = shard_read_meta(f, path, &s->meta);
    if (!rc) rc = shard_read_pair_meta(f, path, pairs, &s->meta);
    if (!rc && want_hash && s->meta.vocab_hash != want_hash)
        rc =
            xlmc_error("%s: prepared with vocabulary %016llx, but %016llx is expected (the "
                       "model's or the directory's; re-run `xlmc prep` with the same codes and "
                       "vocab)",
                       path, (unsigned long long)s->meta.vocab_hash, (unsigned long long)want_hash);
    if (!rc && tokens) rc = shard_read_data(f, path, s);
    if (H5Fclose(f) < 0 && !rc) rc = xlmc_error("%s: HDF5 close failed", path);
    if (rc) shard_free(s);
    return rc;
}

void shard_free(struct shard *s) {
    free(s->tokens);
    free(s->offsets);
    free(s->sources);
    s->tokens = NULL;
    s->offsets = NULL;
    s->sources = NULL;
}

int shard_upgrade(const char *path) {
    struct shard sh;
    if (shard_read(path, 0, 1, &sh)) return -1;
    if (sh.meta.version == SHARD_FORMAT_VERSION) {
        shard_free(&sh);
        return 1;
    }
    struct shard_writer w;
    shard_writer_init(&w, &sh.meta);
    for (char *p = sh.sources, *e; p && (e = strchr(p, '\n')); p = e + 1) {
        *e = '\0';
        shard_writer_add_source(&w, p);
    }
    for (int64_t i = 0; i < sh.meta.n_sentences; i++)
        shard_writer_append(&w, sh.tokens + sh.offsets[i],
                            (size_t)(sh.offsets[i + 1] - sh.offsets[i]));
    int rc = shard_writer_flush(&w, path);
    shard_writer_free(&w);
    shard_free(&sh);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int shard_list(const char *dir, const char *split, char ***paths, int *n) {
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return xlmc_error("%s: cannot open the shard directory: %s", dir, strerror(errno));
    size_t plen = strlen(split), cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (len < plen + 4 || strncmp(name, split, plen) || name[plen] != '-' ||
            strcmp(name + len - 3, ".h5"))
            continue;
        if ((size_t)*n == cap) {
            cap = cap ? 2 * cap : 16;
            *paths = xrealloc(*paths, cap * sizeof **paths);
        }
        char *p = xmalloc(strlen(dir) + len + 2);
        sprintf(p, "%s/%s", dir, name);
        (*paths)[(*n)++] = p;
    }
    closedir(d);
    if (*n) qsort(*paths, (size_t)*n, sizeof **paths, cmp_str);
    return 0;
}

void shard_list_free(char **paths, int n) {
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}
